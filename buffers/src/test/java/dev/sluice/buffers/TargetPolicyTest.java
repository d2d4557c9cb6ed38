package dev.sluice.buffers;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.net.InetAddress;
import java.net.URI;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/** Where buffers may deliver: the rules, their order, and the words of each refusal. */
class TargetPolicyTest {

  private static void refused(TargetPolicy p, String url, String... words) {
    assertThatThrownBy(() -> p.check(URI.create(url)))
        .isInstanceOf(BufferException.class)
        .satisfies(e -> assertThat(e.getMessage()).contains(words));
  }

  @Test
  void denyWinsOverAllowAndAllowIsAClosedList() {
    TargetPolicy p = TargetPolicy.of(List.of("10.0.0.0/8"), List.of("10.9.0.0/16"));
    p.check(URI.create("http://10.1.2.3/x"));
    refused(p, "http://10.9.1.1/x", "'10.9.1.1' is in --buffer-deny 10.9.0.0/16");
    refused(p, "http://192.0.2.1/x", "outside --buffer-allow (10.0.0.0/8)");
    refused(p, "http://[2001:db8::1]/x", "outside --buffer-allow");
  }

  @Test
  void linkLocalIsLiftedOnlyByAnAllowEntryInsideIt() {
    refused(TargetPolicy.defaults(), "http://169.254.169.254/", "link-local (169.254.0.0/16)", "--buffer-allow");
    refused(TargetPolicy.of(List.of("0.0.0.0/0"), List.of()), "http://169.254.169.254/", "link-local");
    TargetPolicy.of(List.of("169.254.10.0/24"), List.of()).check(URI.create("http://169.254.10.7/"));
    refused(TargetPolicy.defaults(), "http://[fe80::1]/", "link-local (fe80::/10)");
    refused(TargetPolicy.defaults(), "http://[::ffff:169.254.169.254]/", "link-local (169.254.0.0/16)");
  }

  @Test
  void theCoordinatorsOwnPortsOnLocalAddressesAreRefused() {
    TargetPolicy p = TargetPolicy.defaults();
    p.ownPort(7421);
    p.check(URI.create("http://127.0.0.1:7422/")); // another local port: the admin's call
    p.check(URI.create("http://192.0.2.1:7421/")); // the same port elsewhere
    refused(p, "http://127.0.0.1:7421/", "port 7421 is this coordinator's own");
    refused(p, "http://[::1]:7421/", "this coordinator's own");
    refused(p, "http://0.0.0.0:7421/", "this coordinator's own");
    refused(p, "http://127.0.0.2:7421/", "this coordinator's own");
  }

  @Test
  void ambiguousIpv4FormsAreRefusedWithTheAddressTheyMean() {
    TargetPolicy p = TargetPolicy.defaults();
    refused(p, "http://0x7f000001/", "non-standard form", "e.g. 127.0.0.1");
    refused(p, "http://2130706433/", "e.g. 127.0.0.1");
    assertThatThrownBy(() -> TargetPolicy.checkHostForm("127.1")).hasMessageContaining("e.g. 127.0.0.1");
    refused(p, "http://0177.0.0.1/", "e.g. 127.0.0.1");
    assertThatThrownBy(() -> TargetPolicy.checkHostForm("0xa9.254.169.254"))
        .hasMessageContaining("e.g. 169.254.169.254");
    refused(p, "http://1.2.3.4.5/", "has no host");
    assertThatThrownBy(() -> TargetPolicy.checkHostForm("1.2.3.4.5")).hasMessageContaining("such as 192.0.2.10");
    refused(p, "http://127.0.0.1:0/", "port 0");
  }

  @Test
  void everyAddressANameResolvesToIsCheckedEachTime() {
    AtomicReference<String[]> answer = new AtomicReference<>(new String[] {"192.0.2.1"});
    TargetPolicy p = TargetPolicy.defaults().withResolver(host -> {
      String[] a = answer.get();
      InetAddress[] out = new InetAddress[a.length];
      for (int i = 0; i < a.length; i++) {
        out[i] = InetAddress.getByName(a[i]);
      }
      return out;
    });
    p.check(URI.create("https://api.example.test/x"));
    answer.set(new String[] {"192.0.2.1", "169.254.169.254"});
    refused(p, "https://api.example.test/x", "'api.example.test' resolves to 169.254.169.254, which is link-local");
    answer.set(new String[0]);
    refused(p, "https://api.example.test/x", "resolves to no address");
  }

  @Test
  void aBadNetworkNamesItsFlag() {
    assertThatThrownBy(() -> TargetPolicy.of(List.of("10.0.0.0/33"), List.of()))
        .hasMessageContaining("--buffer-allow '10.0.0.0/33'").hasMessageContaining("0 to 32");
    assertThatThrownBy(() -> TargetPolicy.of(List.of(), List.of("example.com")))
        .hasMessageContaining("--buffer-deny 'example.com' is not a network");
    assertThatThrownBy(() -> TargetPolicy.of(List.of(), List.of("fd00::/x")))
        .hasMessageContaining("--buffer-deny 'fd00::/x'");
    assertThat(TargetPolicy.of(List.of("10.0.0.0/8, fd00::/8"), List.of()).describe())
        .contains("only 10.0.0.0/8, fd00::/8");
  }

  @Test
  void urlsAreShownWithTheirSecretsMasked() {
    assertThat(BufferSpec.maskUrl("https://u:p@h.example/a/b?token=s3cret&x=1&flag#frag"))
        .isEqualTo("https://***@h.example/a/b?token=***&x=***&***#***");
    assertThat(BufferSpec.maskUrl("http://h/p")).isEqualTo("http://h/p");
    assertThat(BufferSpec.maskUrl("http://h/p?")).isEqualTo("http://h/p?");
    assertThat(BufferSpec.maskUrl("not a url ?key=abc")).isEqualTo("not a url ?key=***");
  }
}
