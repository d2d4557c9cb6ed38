package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The leak check the HTTP tests run under does see a leak. */
class NettyLeakCheckTest {

  @Test
  void aPooledBufferDroppedWithoutReleaseIsReported() {
    NettyLeakCheck.start();
    try {
      leakOne();
      List<String> found = NettyLeakCheck.collect();
      assertThat(found).as("the dropped buffer").isNotEmpty();
      assertThat(found.get(0)).startsWith("LEAK: ByteBuf").contains("leakOne");
      assertThat(NettyLeakCheck.collect()).as("reported once").isEmpty();
    } finally {
      NettyLeakCheck.stop();
    }
  }

  @Test
  void releasedBuffersAreNotReported() {
    NettyLeakCheck.start();
    try {
      ByteBuf b = ByteBufAllocator.DEFAULT.directBuffer(1024);
      b.writeLong(7);
      b.release();
      assertThat(NettyLeakCheck.collect()).isEmpty();
    } finally {
      NettyLeakCheck.stop();
    }
  }

  private static void leakOne() {
    ByteBuf b = ByteBufAllocator.DEFAULT.directBuffer(1024);
    b.writeLong(42); // a recorded access: the report shows where the buffer was used
  }
}
