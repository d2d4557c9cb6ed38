package dev.sluice.examples.mock;

/** A 400 {@code invalid_request_error}, with OpenAI's {@code param} and {@code code}. */
final class InvalidRequest extends Exception {

  final String param;
  final String code;

  InvalidRequest(String message, String param, String code) {
    super(message, null, false, false);
    this.param = param;
    this.code = code;
  }
}
