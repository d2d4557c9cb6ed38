package dev.sluice.bench;

import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Two hand-written SVG bar charts from one run: throughput (with the windows' range as a whisker)
 * and latency p50/p99, both on log scales (microseconds to seconds, thousands to millions).
 */
final class Svg {

  private static final int WIDTH = 960;
  private static final int LABEL = 360;
  private static final int PLOT = 470;
  private static final int ROW = 22;
  private static final int TOP = 58;

  static final Map<String, String> COLORS = Map.of(
      "ceiling", "#8c8c8c",
      "memory", "#2b6cb0",
      "contended", "#2c7a7b",
      "redis", "#6b46c1",
      "peers", "#dd6b20");

  private Svg() {}

  /**
   * Horizontal bars of operations per second, one per scenario, on a log scale: the in-process
   * peer runs at millions per second, networked calls at thousands, and both must stay legible.
   */
  static String throughput(List<Result> results, String subtitle) {
    List<Result> rows = results.stream().filter(Result::ok).toList();
    double max = rows.stream().mapToDouble(r -> r.rate().max()).max().orElse(1);
    double min = rows.stream().mapToDouble(r -> r.rate().min()).filter(v -> v > 0).min().orElse(1);
    double lo = Math.pow(10, Math.floor(Math.log10(Math.max(1, min))));
    double hi = Math.pow(10, Math.ceil(Math.log10(Math.max(max, lo * 10))));
    double decades = Math.log10(hi / lo);
    StringBuilder b = header(rows.size(),
        "Throughput per scenario, log scale (median of windows; whisker: min–max of windows)", subtitle);
    for (double t = lo; t <= hi * 1.0001; t *= 10) {
      double x = LABEL + PLOT * Math.log10(t / lo) / decades;
      b.append(String.format(Locale.ROOT, "<line x1='%.1f' x2='%.1f' y1='%d' y2='%d' stroke='#ddd'/>%n", x, x,
          TOP - 4, TOP + rows.size() * ROW));
      b.append(String.format(Locale.ROOT, "<text x='%.1f' y='%d' class='a'>%s/s</text>%n", x, TOP - 8,
          esc(Fmt.rate(t))));
    }
    int y = TOP;
    for (Result r : rows) {
      Result.Spread s = r.rate();
      double w = PLOT * Math.log10(Math.max(lo, s.median()) / lo) / decades;
      double x0 = LABEL + PLOT * Math.log10(Math.max(lo, s.min()) / lo) / decades;
      double x1 = LABEL + PLOT * Math.log10(Math.max(lo, s.max()) / lo) / decades;
      label(b, y, r);
      b.append(String.format(Locale.ROOT, "<rect x='%d' y='%d' width='%.1f' height='%d' fill='%s'/>%n",
          LABEL, y + 4, Math.max(1, w), ROW - 8, color(r)));
      b.append(String.format(Locale.ROOT,
          "<line x1='%.1f' x2='%.1f' y1='%d' y2='%d' stroke='#222' stroke-width='1'/>%n", x0, x1, y + ROW / 2,
          y + ROW / 2));
      b.append(String.format(Locale.ROOT, "<text x='%.1f' y='%d' class='v'>%s %s</text>%n",
          Math.max(LABEL + w, x1) + 6, y + 15, esc(Fmt.rate(s.median())), esc(r.unit)));
      y += ROW;
    }
    legend(b, y + 10);
    return b.append("</svg>\n").toString();
  }

  /** p50 and p99 bars per scenario, log scale. */
  static String latency(List<Result> results, String subtitle) {
    List<Result> rows = results.stream().filter(Result::ok).filter(r -> !r.p99().isNaN()).toList();
    double max = rows.stream().mapToDouble(r -> r.p99().median()).max().orElse(1000);
    double lo = 10;
    double hi = Math.max(1000, Math.pow(10, Math.ceil(Math.log10(max))));
    StringBuilder b = header(rows.size(), "Latency per operation: p50 (dark) and p99 (light), log scale", subtitle);
    double decades = Math.log10(hi / lo);
    for (double t = lo; t <= hi * 1.0001; t *= 10) {
      double x = LABEL + PLOT * Math.log10(t / lo) / decades;
      b.append(String.format(Locale.ROOT,
          "<line x1='%.1f' x2='%.1f' y1='%d' y2='%d' stroke='#ddd'/>%n", x, x, TOP - 4, TOP + rows.size() * ROW));
      b.append(String.format(Locale.ROOT, "<text x='%.1f' y='%d' class='a'>%s</text>%n", x, TOP - 8,
          esc(tick(t))));
    }
    int y = TOP;
    for (Result r : rows) {
      label(b, y, r);
      double p50 = r.p50().median();
      double p99 = r.p99().median();
      double w99 = PLOT * Math.log10(Math.max(lo, p99) / lo) / decades;
      double w50 = PLOT * Math.log10(Math.max(lo, p50) / lo) / decades;
      String color = color(r);
      b.append(String.format(Locale.ROOT,
          "<rect x='%d' y='%d' width='%.1f' height='%d' fill='%s' fill-opacity='0.35'/>%n", LABEL, y + 4,
          Math.max(1, w99), ROW - 8, color));
      b.append(String.format(Locale.ROOT, "<rect x='%d' y='%d' width='%.1f' height='%d' fill='%s'/>%n", LABEL,
          y + 7, Math.max(1, w50), ROW - 14, color));
      b.append(String.format(Locale.ROOT, "<text x='%.1f' y='%d' class='v'>%s / %s</text>%n",
          LABEL + Math.max(w99, w50) + 6, y + 15, esc(Fmt.micros(p50)), esc(Fmt.micros(p99))));
      y += ROW;
    }
    legend(b, y + 10);
    return b.append("</svg>\n").toString();
  }

  private static StringBuilder header(int rows, String title, String subtitle) {
    int height = TOP + rows * ROW + 40;
    StringBuilder b = new StringBuilder();
    b.append(String.format(Locale.ROOT,
        "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' viewBox='0 0 %d %d' "
            + "font-family='Helvetica, Arial, sans-serif' font-size='12'>%n", WIDTH, height, WIDTH, height));
    b.append("<style>.l{fill:#222}.v{fill:#222;font-size:11px}.a{fill:#666;font-size:10px;text-anchor:middle}"
        + ".t{font-size:15px;font-weight:bold}.s{fill:#555;font-size:11px}</style>\n");
    b.append(String.format(Locale.ROOT, "<rect width='%d' height='%d' fill='white'/>%n", WIDTH, height));
    b.append("<text x='10' y='20' class='t'>").append(esc(title)).append("</text>\n");
    b.append("<text x='10' y='36' class='s'>").append(esc(subtitle)).append("</text>\n");
    return b;
  }

  /** 10 µs, 100 µs, 1 ms, ... 1 s, 10 s. */
  private static String tick(double micros) {
    if (micros < 1000) {
      return Math.round(micros) + " µs";
    }
    if (micros < 1_000_000) {
      return Math.round(micros / 1000) + " ms";
    }
    return Math.round(micros / 1_000_000) + " s";
  }

  private static void label(StringBuilder b, int y, Result r) {
    String text = r.label + " — " + r.driver;
    b.append(String.format(Locale.ROOT, "<text x='%d' y='%d' class='l' text-anchor='end'>%s</text>%n",
        LABEL - 8, y + 15, esc(text.length() > 52 ? text.substring(0, 51) + "…" : text)));
  }

  private static void legend(StringBuilder b, int y) {
    int x = 10;
    for (String g : List.of("ceiling", "memory", "contended", "redis", "peers")) {
      b.append(String.format(Locale.ROOT, "<rect x='%d' y='%d' width='12' height='12' fill='%s'/>%n", x, y,
          COLORS.get(g)));
      String name = switch (g) {
        case "ceiling" -> "raw gRPC echo (ceiling)";
        case "memory" -> "Sluice, memory store";
        case "contended" -> "Sluice, contended";
        case "redis" -> "Sluice, Redis store";
        default -> "same driver: peers and Sluice";
      };
      b.append(String.format(Locale.ROOT, "<text x='%d' y='%d' class='l'>%s</text>%n", x + 16, y + 10, esc(name)));
      x += 40 + name.length() * 6;
    }
  }

  private static String color(Result r) {
    if (r.group.equals("peers") && r.id.contains("sluice")) {
      return COLORS.get("memory");
    }
    return COLORS.getOrDefault(r.group, "#444");
  }

  static String esc(String s) {
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;");
  }
}
