package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;

import io.lettuce.core.codec.StringCodec;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class BulkStringCodecTest {

  private static byte[] encoded(StringCodec codec, String value) {
    ByteBuf buf = Unpooled.buffer();
    try {
      codec.encodeValue(value, buf);
      return ByteBufUtil.getBytes(buf);
    } finally {
      buf.release();
    }
  }

  @Test
  void encodesEveryLengthAndCharacterAsLettucesOwnCodecDoes() {
    String[] pieces = {"a 1 requests=1,tokens=1200 call-7 ", "é", "名", "😀", "\n", ""};
    for (String piece : pieces) {
      for (int n : new int[] {0, 1, 63, 64, 65, 500}) {
        String value = piece.repeat(n / Math.max(1, piece.length()) + (piece.isEmpty() ? 0 : 1));
        assertThat(encoded(BulkStringCodec.UTF8, value))
            .as("%d x '%s'", n, piece)
            .isEqualTo(encoded(StringCodec.UTF8, value))
            .isEqualTo(value.getBytes(StandardCharsets.UTF_8));
      }
    }
  }

  @Test
  void decodesAsTheUsualCodec() {
    String value = "BATCH ".repeat(40) + "名";
    var bytes = StandardCharsets.UTF_8.encode(value);
    assertThat(BulkStringCodec.UTF8.decodeValue(bytes)).isEqualTo(value);
  }
}
