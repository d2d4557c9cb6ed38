package dev.sluice.server.engine;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Limits in {@code <data-dir>/limits.json} (0600). Each save writes a temporary file, forces it
 * to disk, renames it over the old one ({@code ATOMIC_MOVE}) and forces the directory, so a
 * crash at any point leaves a whole file: the old set or the new ({@link DataFiles}); a
 * temporary file a crash left behind is removed at the next load.
 */
public final class FileLimitStore implements LimitStore {

  static final String FILE_NAME = "limits.json";
  private static final int FORMAT_VERSION = 1;
  private static final Logger log = LoggerFactory.getLogger(FileLimitStore.class);

  private final Path dir;
  private final Path file;
  private final ObjectMapper json =
      new ObjectMapper()
          .enable(SerializationFeature.INDENT_OUTPUT)
          .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
          // Garbage after the document means a damaged file, not a valid one with a tail.
          .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
          .setDefaultPropertyInclusion(JsonInclude.Include.NON_NULL);

  public FileLimitStore(Path dataDir) {
    this.dir = dataDir.toAbsolutePath().normalize();
    this.file = dir.resolve(FILE_NAME);
  }

  public Path file() {
    return file;
  }

  // The on-disk shape, kept apart from the engine's records so either can change alone.
  record FileRate(String name, long amount, long periodMillis, long burst) {}

  /** A limit's tenant policy; absent (null) in files written before tenants existed. */
  record FileTenants(
      java.util.Map<String, Double> weights,
      java.util.Map<String, Double> floors,
      java.util.Map<String, List<FileRate>> caps) {}

  /** {@code jitterNanos}: absent (null) in files written before jitter existed, read as 0. */
  record FileLimit(
      String resource,
      List<FileRate> rates,
      long concurrency,
      int maxWaiting,
      long leaseTtlMillis,
      Long jitterNanos,
      @com.fasterxml.jackson.annotation.JsonInclude(com.fasterxml.jackson.annotation.JsonInclude.Include.NON_NULL)
          FileTenants tenants,
      @com.fasterxml.jackson.annotation.JsonInclude(com.fasterxml.jackson.annotation.JsonInclude.Include.NON_NULL)
          FileLearn learn,
      @com.fasterxml.jackson.annotation.JsonInclude(com.fasterxml.jackson.annotation.JsonInclude.Include.NON_NULL)
          List<String> members,
      @com.fasterxml.jackson.annotation.JsonInclude(com.fasterxml.jackson.annotation.JsonInclude.Include.NON_NULL)
          FileOwner owner,
      @com.fasterxml.jackson.annotation.JsonInclude(com.fasterxml.jackson.annotation.JsonInclude.Include.NON_NULL)
          java.util.Map<String, Long> holds) {}

  /** The limits file that manages a limit; absent for one set by hand (and in older files). */
  record FileOwner(String file, String sha256, boolean overridden) {}

  /** A learned limit's settings; absent for a limit set by hand (files written before read as such). */
  record FileLearn(String provider, List<FileRate> ceilings, long learnedAtMillis, String was) {}

  record FileContent(int version, List<FileLimit> limits) {}

  @Override
  public synchronized List<LimitSpec> load() throws IOException {
    DataFiles.ownerOnly(file);
    for (Path left : DataFiles.removeLeftovers(file)) {
      log.info("removed {}, left by a save that was interrupted (the limits are in {})", left, file);
    }
    byte[] bytes;
    try {
      bytes = Files.readAllBytes(file);
    } catch (NoSuchFileException e) {
      return List.of();
    }
    FileContent content;
    try {
      content = json.readValue(bytes, FileContent.class);
    } catch (JsonProcessingException e) {
      throw new IOException(
          "limits file " + file + " is not valid: " + e.getOriginalMessage()
              + " (line " + lineOf(e) + "); restore it from a backup or delete it and set"
              + " the limits again",
          e);
    } catch (IOException e) {
      // Bytes that are not text at all (Jackson guesses UTF-16/32 from zero bytes): not JSON.
      throw invalid("unreadable bytes (" + e.getMessage() + ")", e);
    }
    if (content == null || content.limits() == null) {
      throw new IOException(
          "limits file " + file + " has no \"limits\" list; restore it from a backup or delete"
              + " it and set the limits again");
    }
    if (content.version() != FORMAT_VERSION) {
      throw new IOException(
          "limits file " + file + " has format version " + content.version() + ", this server"
              + " reads version " + FORMAT_VERSION + "; run a matching Sluice version");
    }
    List<LimitSpec> out = new ArrayList<>();
    Set<String> seen = new HashSet<>();
    for (int i = 0; i < content.limits().size(); i++) {
      FileLimit l = content.limits().get(i);
      if (l == null) {
        throw invalid("limits[" + i + "] is null");
      }
      List<RateSpec> rates = new ArrayList<>();
      List<FileRate> fileRates = l.rates() == null ? List.of() : l.rates();
      for (int j = 0; j < fileRates.size(); j++) {
        FileRate r = fileRates.get(j);
        if (r == null) {
          throw invalid("limits[" + i + "].rates[" + j + "] is null");
        }
        rates.add(new RateSpec(r.name(), r.amount(), Duration.ofMillis(r.periodMillis()), r.burst()));
      }
      LimitSpec spec =
          new LimitSpec(
              l.resource(), rates, l.concurrency(), l.maxWaiting(), Duration.ofMillis(l.leaseTtlMillis()),
              Duration.ofNanos(l.jitterNanos() == null ? 0 : l.jitterNanos()),
              tenants(l.tenants()),
              learn(l.learn(), i),
              l.members(),
              owner(l.owner(), i),
              l.holds()); // absent in files written before held dimensions existed: none
      try {
        // Templates are stored beside the limits, under their patterns.
        out.add(Validation.limit(spec, l.maxWaiting() == 0 ? 1 : l.maxWaiting(), spec.leaseTtl(),
            Templates.isPattern(l.resource())));
      } catch (EngineException e) {
        throw new IOException(
            "limits file " + file + " holds an invalid limit at limits[" + i + "]: "
                + e.getMessage(),
            e);
      }
      if (!seen.add(l.resource())) {
        throw invalid("limits[" + i + "] sets '" + l.resource() + "' a second time");
      }
    }
    return out;
  }

  private static TenantPolicy tenants(FileTenants t) {
    if (t == null) {
      return TenantPolicy.NONE;
    }
    java.util.Map<String, List<RateSpec>> caps = new java.util.TreeMap<>();
    if (t.caps() != null) {
      t.caps().forEach((tenant, rates) -> caps.put(tenant, rates == null ? List.of() : rates.stream()
          .map(r -> new RateSpec(r.name(), r.amount(), Duration.ofMillis(r.periodMillis()), r.burst()))
          .toList()));
    }
    return new TenantPolicy(
        t.weights() == null ? java.util.Map.of() : t.weights(),
        t.floors() == null ? java.util.Map.of() : t.floors(),
        caps);
  }

  private static FileTenants fileTenants(TenantPolicy t) {
    if (t.isEmpty()) {
      return null;
    }
    java.util.Map<String, List<FileRate>> caps = new java.util.TreeMap<>();
    t.caps().forEach((tenant, rates) -> caps.put(tenant, rates.stream()
        .map(r -> new FileRate(r.name(), r.amount(), r.period().toMillis(), r.burst()))
        .toList()));
    return new FileTenants(t.weights(), t.floors(), caps);
  }

  private LearnSpec learn(FileLearn l, int i) throws IOException {
    if (l == null) {
      return null;
    }
    List<RateSpec> ceilings = new ArrayList<>();
    for (FileRate c : l.ceilings() == null ? List.<FileRate>of() : l.ceilings()) {
      if (c == null) {
        throw invalid("limits[" + i + "].learn.ceilings holds a null");
      }
      ceilings.add(new RateSpec(c.name(), c.amount(), Duration.ofMillis(c.periodMillis()), 0));
    }
    return new LearnSpec(l.provider(), ceilings, l.learnedAtMillis(), l.was());
  }

  private LimitOwner owner(FileOwner o, int i) throws IOException {
    if (o == null) {
      return null;
    }
    if (o.file() == null || o.file().isEmpty() || o.sha256() == null) {
      throw invalid("limits[" + i + "].owner needs a file and a sha256");
    }
    return new LimitOwner(o.file(), o.sha256(), o.overridden());
  }

  private static FileLearn fileLearn(LearnSpec l) {
    return l == null ? null : new FileLearn(l.provider(),
        l.ceilings().stream().map(c -> new FileRate(c.name(), c.amount(), c.period().toMillis(), 0)).toList(),
        l.learnedAtMillis(), l.was());
  }

  private IOException invalid(String what) {
    return invalid(what, null);
  }

  private IOException invalid(String what, Throwable cause) {
    return new IOException(
        "limits file " + file + " is not valid: " + what + "; restore it from a backup or"
            + " delete it and set the limits again",
        cause);
  }

  private static String lineOf(JsonProcessingException e) {
    return e.getLocation() == null ? "?" : String.valueOf(e.getLocation().getLineNr());
  }

  @Override
  public synchronized void save(Collection<LimitSpec> limits) throws IOException {
    List<FileLimit> out = new ArrayList<>();
    limits.stream()
        .sorted(Comparator.comparing(LimitSpec::resource))
        .forEach(
            l ->
                out.add(
                    new FileLimit(
                        l.resource(),
                        l.rates().stream()
                            .map(r -> new FileRate(r.name(), r.amount(), r.period().toMillis(), r.burst()))
                            .toList(),
                        l.concurrency(),
                        l.maxWaiting(),
                        l.leaseTtl().toMillis(),
                        l.jitter().isZero() ? null : l.jitter().toNanos(),
                        fileTenants(l.tenants()),
                        fileLearn(l.learn()),
                        l.isPool() ? l.members() : null,
                        l.owner() == null ? null
                            : new FileOwner(l.owner().file(), l.owner().sha256(), l.owner().overridden()),
                        l.holds().isEmpty() ? null : l.holds())));
    byte[] bytes = json.writeValueAsBytes(new FileContent(FORMAT_VERSION, out));
    DataFiles.writeAtomically(dir, file, bytes);
  }
}
