package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatCode;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

class SluiceClientBuilderTest {

  @ParameterizedTest
  @ValueSource(strings = {"", " ", "localhost", "localhost:", "localhost:0", "localhost:70000", "local host:7420", ":7420"})
  void badTargetIsRefusedWithAnExample(String target) {
    assertThatThrownBy(() -> SluiceClient.builder().target(target))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("localhost:7420");
  }

  @ParameterizedTest
  @ValueSource(strings = {"localhost:7420", "10.0.0.1:1", "[::1]:7420", "dns:///sluice.internal:7420"})
  void goodTargetIsAccepted(String target) {
    assertThatCode(() -> SluiceClient.builder().target(target)).doesNotThrowAnyException();
  }

  @Test
  void valueSetTwiceIsRefused() {
    assertThatThrownBy(() -> SluiceClient.builder().target("a:1").target("b:2"))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("target was already set");
    assertThatThrownBy(() -> SluiceClient.builder().defaultLane(Lane.BATCH).defaultLane(Lane.BATCH))
        .isInstanceOf(IllegalStateException.class);
    assertThatThrownBy(() -> SluiceClient.builder().executor(Runnable::run).executor(Runnable::run))
        .isInstanceOf(IllegalStateException.class);
    assertThatThrownBy(() -> SluiceClient.builder().defaultTimeout(Duration.ZERO).defaultTimeout(Duration.ZERO))
        .isInstanceOf(IllegalStateException.class);
    assertThatThrownBy(() -> SluiceClient.builder().session(1).session(2))
        .isInstanceOf(IllegalStateException.class).hasMessageContaining("session is already set");
  }

  @Test
  void sessionStreamsOutOfRangeAreRefusedWithTheRange() {
    for (int bad : new int[] {0, -1, 17}) {
      assertThatThrownBy(() -> SluiceClient.builder().session(bad))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("1 to 16, got " + bad);
    }
  }

  @Test
  void targetAndChannelAreExclusive() {
    ManagedChannel channel = InProcessChannelBuilder.forName("unused").build();
    try {
      assertThatThrownBy(() -> SluiceClient.builder().target("a:1").channel(channel))
          .isInstanceOf(IllegalStateException.class)
          .hasMessageContaining("either target or channel");
      assertThatThrownBy(() -> SluiceClient.builder().channel(channel).target("a:1"))
          .isInstanceOf(IllegalStateException.class)
          .hasMessageContaining("either target or channel");
    } finally {
      channel.shutdownNow();
    }
  }

  @Test
  void negativeDefaultTimeoutIsRefused() {
    assertThatThrownBy(() -> SluiceClient.builder().defaultTimeout(Duration.ofSeconds(-1)))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining(">= 0");
  }

  @Test
  void nullIsRefusedWithTheDefaultNamed() {
    assertThatThrownBy(() -> SluiceClient.builder().defaultLane(null))
        .isInstanceOf(NullPointerException.class)
        .hasMessageContaining("Lane.DEFAULT");
  }

  @Test
  void targetDefaultsToEnvironmentThenLocalhost() {
    assertThat(SluiceClient.Builder.defaultTarget(Map.<String, String>of()::get)).isEqualTo("localhost:7420");
    assertThat(SluiceClient.Builder.defaultTarget(Map.of("SLUICE_TARGET", " ")::get)).isEqualTo("localhost:7420");
    assertThat(SluiceClient.Builder.defaultTarget(Map.of("SLUICE_TARGET", "sluice:9000")::get)).isEqualTo("sluice:9000");
    assertThatThrownBy(() -> SluiceClient.Builder.defaultTarget(Map.of("SLUICE_TARGET", "sluice")::get))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("SLUICE_TARGET");
  }

  @Test
  void closeShutsDownTheChannelTheClientBuilt() {
    SluiceClient client = SluiceClient.builder().target("localhost:1").build();
    ManagedChannel own = client.channel();
    assertThat(own.isShutdown()).isFalse();
    client.close();
    assertThat(own.isShutdown()).isTrue();
  }

  @Test
  void closeLeavesACallersChannelOpen() {
    ManagedChannel channel = InProcessChannelBuilder.forName("unused").build();
    try {
      SluiceClient client = SluiceClient.builder().channel(channel).build();
      client.close();
      client.close(); // idempotent
      assertThat(channel.isShutdown()).isFalse();
      assertThatThrownBy(() -> client.acquire("openai"))
          .isInstanceOf(IllegalStateException.class)
          .hasMessageContaining("closed");
    } finally {
      channel.shutdownNow();
    }
  }
}
