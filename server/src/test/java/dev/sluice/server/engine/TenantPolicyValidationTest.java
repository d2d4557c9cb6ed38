package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** A limit's tenant policy is checked before it is stored: every refusal names the fix. */
class TenantPolicyValidationTest {

  private static final RateSpec TOKENS = new RateSpec("tokens", 6_000, Duration.ofMinutes(1), 200);

  private static LimitSpec check(TenantPolicy policy) {
    return Validation.limit(new LimitSpec("q", List.of(TOKENS), 0, 0, null, policy), 100, Duration.ofMinutes(1));
  }

  private static void refused(TenantPolicy policy, String... words) {
    assertThatThrownBy(() -> check(policy))
        .isInstanceOfSatisfying(EngineException.class, e -> {
          assertThat(e.reason()).isEqualTo(EngineException.Reason.INVALID);
          assertThat(e.getMessage()).contains(words);
        });
  }

  @Test
  void aValidPolicyIsKeptAndUnnamedTenantsWeighOne() {
    RateSpec cap = new RateSpec("tokens", 600, Duration.ofMinutes(1), 0);
    LimitSpec l = check(new TenantPolicy(Map.of("search", 3.0), Map.of("batch", 0.4), Map.of("research", List.of(cap))));
    assertThat(l.tenants().weight("search")).isEqualTo(3.0);
    assertThat(l.tenants().weight("anyone")).isEqualTo(1.0);
    assertThat(l.tenants().floor("batch")).isEqualTo(0.4);
    assertThat(l.tenants().cap("research")).singleElement()
        .satisfies(r -> assertThat(r.burst()).as("the default burst, one second's worth").isEqualTo(10));
    assertThat(check(null).tenants()).isEqualTo(TenantPolicy.NONE);
  }

  @Test
  void weightsMustBePositiveAndBounded() {
    refused(new TenantPolicy(Map.of("a", -1.0), Map.of(), Map.of()), "share a=-1.0", "above 0");
    refused(new TenantPolicy(Map.of("a", 0.0), Map.of(), Map.of()), "share a=0.0");
    refused(new TenantPolicy(Map.of("a", Double.NaN), Map.of(), Map.of()), "share a=NaN");
    refused(new TenantPolicy(Map.of("a", 2e6), Map.of(), Map.of()), "at most 1000000");
  }

  @Test
  void floorsMustFitInOneHundredPercent() {
    refused(new TenantPolicy(Map.of(), Map.of("a", 0.7, "b", 0.5), Map.of()), "sum to 120", "at most 100 %");
    refused(new TenantPolicy(Map.of(), Map.of("a", 0.0), Map.of()), "floor a=0", "more than 0 %");
    refused(new TenantPolicy(Map.of(), Map.of("a", 1.5), Map.of()), "floor a=150");
  }

  @Test
  void aCapMustBeOnTheLimitsDimensionsAndBelowIt() {
    refused(new TenantPolicy(Map.of(), Map.of(), Map.of("a", List.of(new RateSpec("usd", 10, Duration.ofDays(1), 0)))),
        "dimension 'usd'", "does not have", "tokens");
    refused(new TenantPolicy(Map.of(), Map.of(), Map.of("a", List.of(new RateSpec("tokens", 9_000, Duration.ofMinutes(1), 0)))),
        "above the quota itself", "lower it");
    refused(new TenantPolicy(Map.of(), Map.of(), Map.of("a", List.of(new RateSpec("tokens", 60, Duration.ofMinutes(1), 500)))),
        "burst 500", "above the quota");
    refused(new TenantPolicy(Map.of(), Map.of(), Map.of("a", List.of())), "has no rate");
  }

  @Test
  void tenantNamesArePlainNames() {
    refused(new TenantPolicy(Map.of("no spaces", 2.0), Map.of(), Map.of()), "tenant name 'no spaces' is invalid");
    assertThatThrownBy(() -> Validation.tenant("x".repeat(65))).hasMessageContaining("1-64 characters");
    assertThat(Validation.tenant("team:search-1")).isEqualTo("team:search-1");
    // Stats and metrics count the tenants a policy does not name as "other": the name is taken.
    refused(new TenantPolicy(Map.of("other", 2.0), Map.of(), Map.of()), "names a tenant 'other'", "another name");
    refused(new TenantPolicy(Map.of(), Map.of("other", 0.2), Map.of()), "names a tenant 'other'");
  }

  @Test
  void anAcquireNamingAnInvalidTenantIsRefused() throws Exception {
    FakeClock clock = new FakeClock();
    MemoryEngine e = MemoryEngine.builder().ticker(clock).scheduler(clock).build();
    SyncEngine.sync(e).setLimit(new LimitSpec("q", List.of(TOKENS), 0, 0, null));
    assertThat(e.acquire("q", Map.of("tokens", 1L), Lane.DEFAULT, 0, null, "bad tenant").future())
        .failsWithin(Duration.ZERO)
        .withThrowableThat()
        .withMessageContaining("tenant name 'bad tenant' is invalid");
  }
}
