package dev.sluice.examples.mock;

import com.sun.net.httpserver.Headers;

/**
 * Azure OpenAI's rate-limit headers, as its deployments send them: what is left of each
 * dimension, no limit and no reset ({@code x-ratelimit-remaining-requests|tokens}); on a 429 the
 * pause in milliseconds twice ({@code retry-after-ms} and {@code x-ms-retry-after-ms}) and in
 * seconds ({@code retry-after}).
 */
final class AzureHeaders {

  private AzureHeaders() {}

  static void rate(Headers headers, Decision.RateHeaders h) {
    headers.set("x-ratelimit-remaining-requests", Long.toString(h.remainingRequests()));
    headers.set("x-ratelimit-remaining-tokens", Long.toString(h.remainingTokens()));
  }

  static void retryAfter(Headers headers, long waitMillis) {
    headers.set("x-ms-retry-after-ms", Long.toString(waitMillis));
  }
}
