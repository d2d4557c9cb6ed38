package dev.sluice.server.tls;

import java.io.IOException;
import java.io.StringWriter;
import java.math.BigInteger;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.time.Duration;
import java.time.Instant;
import java.util.Date;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.X509v3CertificateBuilder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.openssl.jcajce.JcaPEMWriter;
import org.bouncycastle.openssl.jcajce.JcaPKCS8Generator;
import org.bouncycastle.operator.ContentSigner;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;

/**
 * A throw-away PKI made at test time: a CA, and certificates it signs, written as PEM files
 * (certificate, unencrypted PKCS#8 key). No private key is ever committed.
 */
public final class TestPki {

  /** A certificate and its key on disk. */
  public record Issued(Path cert, Path key) {}

  private final Path dir;
  private final KeyPair caKeys;
  private final X509Certificate ca;
  private final Path caFile;
  private int serial = 1;

  private TestPki(Path dir, String caName) throws Exception {
    this.dir = dir;
    this.caKeys = keyPair();
    X500Name name = new X500Name("CN=" + caName);
    X509v3CertificateBuilder b = new JcaX509v3CertificateBuilder(name, BigInteger.valueOf(serial++),
        Date.from(Instant.now().minus(Duration.ofHours(1))), Date.from(Instant.now().plus(Duration.ofDays(1))),
        name, caKeys.getPublic());
    b.addExtension(Extension.basicConstraints, true, new BasicConstraints(true));
    b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign));
    this.ca = sign(b, caKeys.getPrivate());
    this.caFile = dir.resolve(caName + "-ca.pem");
    writePem(caFile, ca);
  }

  /** A new CA named {@code caName}, its files under {@code dir}. */
  public static TestPki create(Path dir, String caName) throws Exception {
    return new TestPki(dir, caName);
  }

  /** The CA certificate, PEM. */
  public Path caFile() {
    return caFile;
  }

  /** A certificate for {@code localhost} and {@code 127.0.0.1}, for a server or a client. */
  public Issued issue(String commonName) throws Exception {
    KeyPair keys = keyPair();
    X509v3CertificateBuilder b = new JcaX509v3CertificateBuilder(ca, BigInteger.valueOf(serial++),
        Date.from(Instant.now().minus(Duration.ofHours(1))), Date.from(Instant.now().plus(Duration.ofDays(1))),
        new X500Name("CN=" + commonName), keys.getPublic());
    b.addExtension(Extension.subjectAlternativeName, false, new GeneralNames(new GeneralName[] {
        new GeneralName(GeneralName.dNSName, "localhost"), new GeneralName(GeneralName.iPAddress, "127.0.0.1")}));
    X509Certificate cert = sign(b, caKeys.getPrivate());
    Path certFile = dir.resolve(commonName + ".pem");
    Path keyFile = dir.resolve(commonName + "-key.pem");
    writePem(certFile, cert);
    writePem(keyFile, new JcaPKCS8Generator(keys.getPrivate(), null).generate());
    return new Issued(certFile, keyFile);
  }

  private static KeyPair keyPair() throws Exception {
    KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
    g.initialize(new ECGenParameterSpec("secp256r1"), new SecureRandom());
    return g.generateKeyPair();
  }

  private static X509Certificate sign(X509v3CertificateBuilder b, PrivateKey key) throws Exception {
    ContentSigner signer = new JcaContentSignerBuilder("SHA256withECDSA").build(key);
    return new JcaX509CertificateConverter().getCertificate(b.build(signer));
  }

  private static void writePem(Path file, Object o) throws IOException {
    StringWriter s = new StringWriter();
    try (JcaPEMWriter w = new JcaPEMWriter(s)) {
      w.writeObject(o);
    }
    Files.writeString(file, s.toString());
  }
}
