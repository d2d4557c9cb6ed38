package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/**
 * Every one of the 65 536 characters, alone and inside a name, is allowed in a resource or
 * tenant name exactly when the documented sets say so ({@code [A-Za-z0-9._:/-]} for resources,
 * the same without {@code /} for tenants): nothing outside them passes, a lone surrogate or a
 * look-alike letter included.
 */
class NameCharactersTest {

  private static boolean documented(char c, boolean slash) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
        || c == '.' || c == '_' || c == '-' || c == ':' || (slash && c == '/');
  }

  private static boolean accepted(Runnable check) {
    try {
      check.run();
      return true;
    } catch (EngineException e) {
      return false;
    }
  }

  @Test
  void everyCharacterIsAllowedExactlyWhenTheDocumentedSetsSaySo() {
    int allowedInResources = 0;
    for (int i = 0; i <= Character.MAX_VALUE; i++) {
      char c = (char) i;
      String alone = String.valueOf(c);
      String inside = "ab" + c + "cd";
      assertThat(accepted(() -> Validation.resource(alone))).as("resource %04x", i).isEqualTo(documented(c, true));
      assertThat(accepted(() -> Validation.resource(inside))).as("resource ..%04x..", i).isEqualTo(documented(c, true));
      assertThat(accepted(() -> Validation.tenant(alone))).as("tenant %04x", i).isEqualTo(documented(c, false));
      assertThat(accepted(() -> Validation.tenant(inside))).as("tenant ..%04x..", i).isEqualTo(documented(c, false));
      allowedInResources += documented(c, true) ? 1 : 0;
    }
    assertThat(allowedInResources).isEqualTo(26 + 26 + 10 + 5); // letters, digits and . _ - : /
  }
}
