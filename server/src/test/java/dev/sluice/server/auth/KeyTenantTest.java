package dev.sluice.server.auth;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.server.engine.EngineException;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Keys bound to a tenant: which tenant an acquire with the key is in, and the key file of a
 * coordinator from before tenants (no {@code tenant} field) still loading, its keys bound to none.
 */
class KeyTenantTest {

  @TempDir Path dir;

  private Principal principal(String tenant) throws IOException {
    return new Principal("0123456789ab", Role.WORKER, ResourcePattern.parse("*"), new FileKeyStore(dir), tenant);
  }

  @Test
  void aBoundKeyUsesItsTenantForNoneOrTheSameAndRefusesAnother() throws IOException {
    Principal bound = principal("search");
    assertThat(bound.tenant(null)).isEqualTo("search");
    assertThat(bound.tenant("")).isEqualTo("search");
    assertThat(bound.tenant("search")).isEqualTo("search");
    assertThatThrownBy(() -> bound.tenant("ads")).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
      assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.PERMISSION_DENIED);
      assertThat(e.getStatus().getDescription()).contains("API key 0123456789ab is bound to tenant 'search'",
          "cannot acquire as tenant 'ads'", "sluice key create --role worker --tenant ads");
    });
    assertThatThrownBy(() -> bound.tenant("a b")).isInstanceOf(EngineException.class)
        .hasMessageContaining("tenant name 'a b' is invalid");
  }

  @Test
  void anUnboundKeyOrNoKeyUsesTheTenantAskedOrTheDefault() throws IOException {
    Principal free = principal(null);
    assertThat(free.tenant("ads")).isEqualTo("ads");
    assertThat(free.tenant("")).isNull();
    assertThat(free.tenant(null)).isNull();
    assertThat(Principal.checkTenant("ads")).as("outside a checked call").isEqualTo("ads");
    assertThat(Principal.checkTenant("")).isNull();
    assertThatThrownBy(() -> Principal.checkTenant("x".repeat(65))).isInstanceOf(EngineException.class);
  }

  @Test
  void aKeyFileFromBeforeTenantsLoadsAndIsWrittenBackWithoutATenantField() throws IOException {
    StoredKey made = StoredKey.generate(Role.WORKER, ResourcePattern.parse("a:*"), "old", 1).stored();
    String old = "{\"version\":1,\"keys\":[{\"id\":\"" + made.id() + "\",\"role\":\"WORKER\",\"resources\":\"a:*\","
        + "\"description\":\"old\",\"createdUnixMs\":1,\"salt\":\"" + made.salt() + "\",\"hash\":\"" + made.hash()
        + "\"}]}";
    Files.writeString(dir.resolve("keys.json"), old);
    FileKeyStore store = new FileKeyStore(dir);
    assertThat(store.get(made.id())).hasValueSatisfying(k -> assertThat(k.tenant()).isNull());

    StoredKey bound = StoredKey.generate(Role.WORKER, ResourcePattern.parse("*"), "new", "search", 2).stored();
    store.add(bound);
    String written = Files.readString(dir.resolve("keys.json"));
    assertThat(written).containsOnlyOnce("\"tenant\"").contains("\"tenant\" : \"search\"");
    FileKeyStore again = new FileKeyStore(dir);
    assertThat(again.get(bound.id())).hasValue(bound);
    assertThat(again.get(made.id()).orElseThrow().tenant()).isNull();
  }

  @Test
  void aKeyFileWithABadTenantOrABadFieldIsRefusedNamingTheKeyAndTheLine() throws IOException {
    StoredKey made = StoredKey.generate(Role.WORKER, ResourcePattern.parse("*"), "", "search", 1).stored();
    String key = "{\"id\":\"" + made.id() + "\",\"role\":\"WORKER\",\"resources\":\"*\",\"description\":\"\","
        + "\"createdUnixMs\":1,\"salt\":\"" + made.salt() + "\",\"hash\":\"" + made.hash() + "\",\"tenant\":";
    Files.writeString(dir.resolve("keys.json"), "{\"version\":1,\"keys\":[\n" + key + "\"a b\"}]}");
    assertThatThrownBy(() -> new FileKeyStore(dir)).isInstanceOf(IOException.class)
        .hasMessageContaining("line 2").hasMessageContaining("has a bad tenant")
        .hasMessageContaining("tenant name 'a b' is invalid");
    Files.writeString(dir.resolve("keys.json"), "{\"version\":1,\"keys\":[\n" + key + "7, \"x\": 1}]}");
    assertThatThrownBy(() -> new FileKeyStore(dir)).isInstanceOf(IOException.class)
        .hasMessageContaining("line 2").hasMessageContaining("keys[0]");
  }
}
