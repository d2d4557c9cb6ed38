package dev.sluice.server.engine;

import io.lettuce.core.codec.StringCodec;
import io.netty.buffer.ByteBuf;
import java.nio.charset.StandardCharsets;

/**
 * Lettuce's UTF-8 string codec, but a long value is encoded in one bulk step. A batch of
 * acquires and releases goes to the script as one argument of a few kilobytes (RedisBatches),
 * and Lettuce's own encoder walks it a character at a time: that walk was a sixth of a node's
 * CPU under load. {@link String#getBytes} does the same encoding in one intrinsic pass.
 */
final class BulkStringCodec extends StringCodec {
  static final BulkStringCodec UTF8 = new BulkStringCodec();

  /** Shorter values go the usual way: a copy of their own bytes would not pay. */
  private static final int BULK_FROM = 64;

  private BulkStringCodec() {
    super(StandardCharsets.UTF_8);
  }

  @Override
  public void encodeValue(String value, ByteBuf target) {
    if (value != null && value.length() >= BULK_FROM) {
      target.writeBytes(value.getBytes(StandardCharsets.UTF_8));
    } else {
      super.encodeValue(value, target);
    }
  }
}
