package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.Status;
import org.junit.jupiter.api.Test;

/** Which failures the SDK retries on another node: {@link Retrier#isRetryable}. */
class RetrierTest {

  /**
   * grpc-netty fails a call whose frames could not be written to a connection that had just
   * closed (a killed node) with UNKNOWN "channel closed", the ClosedChannelException as its
   * cause, made on the client side: nothing reached the node, so it is retried like UNAVAILABLE.
   * An UNKNOWN with any other cause (or none, as from a server) is an answer.
   */
  @Test
  void unknownFromAClosedChannelIsRetriedOtherUnknownsAreNot() {
    assertThat(Retrier.isRetryable(Status.UNKNOWN.withDescription("channel closed")
        .withCause(new java.nio.channels.ClosedChannelException()).asRuntimeException())).isTrue();
    assertThat(Retrier.isRetryable(Status.UNKNOWN.withDescription("channel closed")
        .withCause(new java.io.IOException("write failed", new java.nio.channels.ClosedChannelException()))
        .asRuntimeException())).isTrue();
    assertThat(Retrier.isRetryable(Status.UNKNOWN.withDescription("boom")
        .withCause(new IllegalStateException("boom")).asRuntimeException())).isFalse();
    assertThat(Retrier.isRetryable(Status.UNKNOWN.withDescription("channel closed").asRuntimeException())).isFalse();
    assertThat(Retrier.isRetryable(Status.INTERNAL.withCause(new java.nio.channels.ClosedChannelException())
        .asRuntimeException())).isFalse();
  }

  @Test
  void unavailableAndCancelledAreRetriedAnswersAreNot() {
    assertThat(Retrier.isRetryable(Status.UNAVAILABLE.asRuntimeException())).isTrue();
    assertThat(Retrier.isRetryable(Status.CANCELLED.asRuntimeException())).isTrue();
    for (Status s : new Status[] {Status.INVALID_ARGUMENT, Status.NOT_FOUND, Status.DEADLINE_EXCEEDED,
        Status.RESOURCE_EXHAUSTED, Status.PERMISSION_DENIED, Status.UNAUTHENTICATED, Status.INTERNAL}) {
      assertThat(Retrier.isRetryable(s.asRuntimeException())).as(s.getCode().toString()).isFalse();
    }
  }
}
