package dev.sluice.client;

import dev.sluice.proto.v1.Lane;
import java.time.Duration;

/** Conversions between the SDK's types and the generated {@code sluice.v1} messages. */
final class Protos {

  // google.protobuf.Duration's documented range: about 10 000 years.
  private static final long MAX_PROTO_SECONDS = 315_576_000_000L;

  private Protos() {}

  static com.google.protobuf.Duration toProto(Duration d) {
    if (d.getSeconds() >= MAX_PROTO_SECONDS) {
      return com.google.protobuf.Duration.newBuilder().setSeconds(MAX_PROTO_SECONDS).build();
    }
    return com.google.protobuf.Duration.newBuilder().setSeconds(d.getSeconds()).setNanos(d.getNano()).build();
  }

  static Duration toJava(com.google.protobuf.Duration d) {
    return Duration.ofSeconds(d.getSeconds(), d.getNanos());
  }

  static Lane toProto(dev.sluice.client.Lane lane) {
    switch (lane) {
      case INTERACTIVE:
        return Lane.LANE_INTERACTIVE;
      case BATCH:
        return Lane.LANE_BATCH;
      case DEFAULT:
      default:
        return Lane.LANE_DEFAULT;
    }
  }

  /** Duration in nanoseconds, saturated instead of overflowing (Duration.toNanos throws past ~292 years). */
  static long saturatedNanos(Duration d) {
    try {
      return d.toNanos();
    } catch (ArithmeticException e) {
      return d.isNegative() ? Long.MIN_VALUE : Long.MAX_VALUE;
    }
  }
}
