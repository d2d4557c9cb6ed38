package dev.sluice.cli;

import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.RateDimension;
import dev.sluice.proto.v1.TenantCap;
import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

/**
 * The tenant options of {@code limit set}: {@code --share TENANT=WEIGHT}, {@code --floor
 * TENANT=PCT%} and {@code --cap TENANT=DIM=AMOUNT/PERIOD[:BURST]}. Each parses one option value;
 * {@link #apply} puts them on a limit, refusing a tenant (or a tenant's dimension) given twice.
 * Ranges that depend on the limit (floors summing over 100 %, a cap above the quota) are the
 * server's to check: it answers with the problem and the fix.
 */
final class Tenants {

  static final String SHARE_FORM = "TENANT=WEIGHT";
  static final String FLOOR_FORM = "TENANT=PCT%";
  static final String CAP_FORM = "TENANT=" + Rates.FORM;

  private static final Pattern NAME = Pattern.compile("[A-Za-z0-9._:-]{1,64}");
  private static final Pattern NUMBER = Pattern.compile("\\d+(\\.\\d+)?|\\.\\d+");

  private Tenants() {}

  record Share(String tenant, double weight) {}

  record Floor(String tenant, double fraction) {}

  record Cap(String tenant, RateDimension rate) {}

  static Share share(String text) {
    String[] kv = split(text, "--share", SHARE_FORM, "search=3");
    double w = number(text, "--share", SHARE_FORM, "search=3", "weight", kv[1]);
    if (w <= 0) {
      throw bad(text, "--share", SHARE_FORM, "search=3", "the weight must be above 0 (unnamed tenants weigh 1)");
    }
    return new Share(kv[0], w);
  }

  static Floor floor(String text) {
    String[] kv = split(text, "--floor", FLOOR_FORM, "search=40%");
    String pct = kv[1].trim();
    if (!pct.endsWith("%")) {
      throw bad(text, "--floor", FLOOR_FORM, "search=40%", "a floor is a percent of the quota: end it with '%'");
    }
    double p = number(text, "--floor", FLOOR_FORM, "search=40%", "percent", pct.substring(0, pct.length() - 1));
    if (p <= 0 || p > 100) {
      throw bad(text, "--floor", FLOOR_FORM, "search=40%", "the percent must be above 0 and at most 100");
    }
    // Sent as a fraction: 40 % is 0.4 (the proto's floors).
    return new Floor(kv[0], new BigDecimal(pct.substring(0, pct.length() - 1)).movePointLeft(2).doubleValue());
  }

  static Cap cap(String text) {
    String[] kv = split(text, "--cap", CAP_FORM, "research=tokens=10000/min");
    try {
      return new Cap(kv[0], Rates.parse(kv[1]));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("bad --cap '" + text + "' (" + CAP_FORM + "): " + e.getMessage());
    }
  }

  /** Puts the options on {@code limit}; refuses the same tenant's share, floor or cap dimension twice. */
  static void apply(Limit.Builder limit, List<Share> shares, List<Floor> floors, List<Cap> caps) {
    for (Share s : shares) {
      if (limit.containsShares(s.tenant())) {
        throw new IllegalArgumentException("--share gives tenant '" + s.tenant() + "' twice: give each tenant's"
            + " weight once");
      }
      limit.putShares(s.tenant(), s.weight());
    }
    for (Floor f : floors) {
      if (limit.containsFloors(f.tenant())) {
        throw new IllegalArgumentException("--floor gives tenant '" + f.tenant() + "' twice: give each tenant's"
            + " floor once");
      }
      limit.putFloors(f.tenant(), f.fraction());
    }
    Map<String, List<RateDimension>> byTenant = new LinkedHashMap<>();
    for (Cap c : caps) {
      List<RateDimension> rates = byTenant.computeIfAbsent(c.tenant(), t -> new ArrayList<>());
      if (rates.stream().anyMatch(r -> r.getName().equals(c.rate().getName()))) {
        throw new IllegalArgumentException("--cap gives tenant '" + c.tenant() + "' dimension '"
            + c.rate().getName() + "' twice: give each dimension of a tenant's cap once");
      }
      rates.add(c.rate());
    }
    byTenant.forEach((t, rates) -> limit.putCaps(t, TenantCap.newBuilder().addAllRates(rates).build()));
  }

  /** The limit's tenant policy as rows for {@link Output#printLimit}, in the syntax the options read. */
  static void rows(Table t, Limit limit) {
    limit.getSharesMap().entrySet().stream().sorted(Map.Entry.comparingByKey())
        .forEach(e -> t.row("share", e.getKey() + "=" + Output.number(e.getValue())));
    limit.getFloorsMap().entrySet().stream().sorted(Map.Entry.comparingByKey())
        .forEach(e -> t.row("floor", e.getKey() + "=" + Output.number(e.getValue() * 100) + "%"));
    limit.getCapsMap().entrySet().stream().sorted(Map.Entry.comparingByKey())
        .forEach(e -> e.getValue().getRatesList().forEach(r -> t.row("cap", e.getKey() + "=" + Rates.format(r))));
  }

  /** One cell for {@code limit list}: how many tenants have a share, a floor, a cap. */
  static String summary(Limit limit) {
    List<String> parts = new ArrayList<>();
    if (limit.getSharesCount() > 0) {
      parts.add(limit.getSharesMap().entrySet().stream().sorted(Map.Entry.comparingByKey())
          .map(e -> e.getKey() + "=" + Output.number(e.getValue())).collect(Collectors.joining(",")));
    }
    if (limit.getFloorsCount() > 0) {
      parts.add("floors " + limit.getFloorsCount());
    }
    if (limit.getCapsCount() > 0) {
      parts.add("caps " + limit.getCapsCount());
    }
    return parts.isEmpty() ? "-" : String.join(" ", parts);
  }

  private static String[] split(String text, String option, String form, String example) {
    String t = text == null ? "" : text.trim();
    int eq = t.indexOf('=');
    if (eq < 0) {
      throw bad(text, option, form, example, "missing '=' after the tenant");
    }
    String tenant = t.substring(0, eq).trim();
    if (!NAME.matcher(tenant).matches()) {
      throw bad(text, option, form, example, tenant.isEmpty() ? "missing tenant name before '='"
          : "tenant name '" + tenant + "' must be 1-64 characters of [A-Za-z0-9._:-]");
    }
    return new String[] {tenant, t.substring(eq + 1)};
  }

  private static double number(String text, String option, String form, String example, String what, String s) {
    String v = s.trim();
    if (v.isEmpty()) {
      throw bad(text, option, form, example, "missing " + what);
    }
    if (!NUMBER.matcher(v).matches()) {
      throw bad(text, option, form, example, what + " '" + v + "' is not a number"
          + (v.startsWith("-") ? " above 0" : ""));
    }
    return Double.parseDouble(v);
  }

  private static IllegalArgumentException bad(String text, String option, String form, String example,
      String problem) {
    return new IllegalArgumentException("bad " + option + " '" + text + "': " + problem + "; expected " + form
        + ", e.g. " + example);
  }

  /** The picocli faces of the parsers. */
  static final class ShareConverter implements picocli.CommandLine.ITypeConverter<Share> {
    @Override
    public Share convert(String value) {
      return converted(() -> share(value));
    }
  }

  static final class FloorConverter implements picocli.CommandLine.ITypeConverter<Floor> {
    @Override
    public Floor convert(String value) {
      return converted(() -> floor(value));
    }
  }

  static final class CapConverter implements picocli.CommandLine.ITypeConverter<Cap> {
    @Override
    public Cap convert(String value) {
      return converted(() -> cap(value));
    }
  }

  private static <T> T converted(java.util.function.Supplier<T> parse) {
    try {
      return parse.get();
    } catch (IllegalArgumentException e) {
      throw new picocli.CommandLine.TypeConversionException(e.getMessage());
    }
  }
}
