package dev.sluice.examples;

/** {@link BatchBufferCases} on a shared Redis. */
class RedisBatchBufferTest extends BatchBufferCases {
  RedisBatchBufferTest() {
    super(Store.REDIS);
  }
}
