package dev.sluice.examples;

/** {@link BatchBufferCases} on the embedded store ({@code buffers.db}). */
class BatchBufferTest extends BatchBufferCases {
  BatchBufferTest() {
    super(Store.EMBEDDED);
  }
}
