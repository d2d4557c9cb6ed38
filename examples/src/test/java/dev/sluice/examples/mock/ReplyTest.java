package dev.sluice.examples.mock;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.examples.TokenEstimator;
import org.junit.jupiter.api.Test;

class ReplyTest {

  @Test
  void everyWordIsOneTokenAloneAndAfterASpace() {
    for (String word : Reply.WORDS) {
      assertThat(TokenEstimator.tokens(word)).as(word).isEqualTo(1);
      assertThat(TokenEstimator.tokens(" " + word)).as(" " + word).isEqualTo(1);
    }
  }
}
