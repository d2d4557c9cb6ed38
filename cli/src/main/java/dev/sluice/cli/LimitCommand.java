package dev.sluice.cli;

import dev.sluice.proto.v1.DeleteLimitRequest;
import dev.sluice.proto.v1.GetLimitRequest;
import dev.sluice.proto.v1.LearnSettings;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.ListLimitsRequest;
import dev.sluice.proto.v1.ListLimitsResponse;
import dev.sluice.proto.v1.RateDimension;
import dev.sluice.proto.v1.SetLimitRequest;
import dev.sluice.proto.v1.SetLimitResponse;
import java.io.PrintWriter;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code sluice limit set|get|list|delete|apply|export}. */
@Command(name = "limit", mixinStandardHelpOptions = true,
    description = "Set, show, list and delete the limits of resources; apply and export limits files.",
    subcommands = {
        LimitCommand.SetLimit.class, LimitCommand.GetLimit.class,
        LimitCommand.ListLimits.class, LimitCommand.DeleteLimit.class,
        LimitCommand.ApplyLimits.class, LimitCommand.ExportLimits.class, LimitCommand.History.class})
final class LimitCommand implements Callable<Integer> {

  @Spec
  private CommandSpec spec;

  @Override
  public Integer call() {
    throw new ParameterException(spec.commandLine(),
        "missing subcommand: set, get, list, delete, apply, export or history");
  }

  @Command(name = "set", mixinStandardHelpOptions = true,
      description = "Creates or replaces the limit of a resource, stored durably, and prints it.",
      footer = {"", "Examples:",
          "  sluice limit set openai --rate requests=500/min --rate tokens=200000/min:4000",
          "  sluice limit set shop:123 --rate requests=2/s:40 --concurrency 10 --lease-ttl 1m",
          "  sluice limit set tier1 --rate requests=60/min:1 --jitter 20ms",
          "  sluice limit set openai --rate tokens=200000/min --share search=3 --share batch=1"
              + " --floor search=40% --cap research=tokens=20000/min",
          "  sluice limit set openai --learn openai --learn-ceiling requests=500/min",
          "  sluice limit set 'customer:*' --rate requests=60/min   (a template: each customer:NAME"
              + " gets its own bucket)",
          "  sluice limit set batch-queue --hold enqueued_tokens=2000000 --lease-ttl 10m"})
  static final class SetLimit implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Mixin
    private Output output;

    @Parameters(index = "0", paramLabel = "NAME",
        description = "Resource name: 1-200 characters of [A-Za-z0-9._:/-]. With * (any run) or ?"
            + " (one character) it is a template: every resource it matches without a limit of its"
            + " own gets its own bucket with this limit (quote it for the shell).")
    private String resource;

    @Option(names = "--rate", paramLabel = Rates.FORM, converter = Rates.Converter.class,
        description = {
            "A rate dimension, repeatable: AMOUNT per PERIOD, bucket capacity BURST.",
            "PERIOD: s, sec, second, min, minute, h, hour, d, day, optionally with a number"
                + " (10s, 5min).",
            "No BURST: the server default, one second's worth of the rate, at least 1.",
            "E.g. requests=500/min, tokens=200000/min:4000."})
    private List<RateDimension> rates = new ArrayList<>();

    @Option(names = "--concurrency", paramLabel = "N",
        description = "Permits held at once; 0 (default) for no cap.")
    private long concurrency;

    @Option(names = "--hold", paramLabel = "DIM=AMOUNT", converter = HoldConverter.class,
        description = {
            "A held dimension, repeatable: the permits alive at once hold at most AMOUNT of DIM"
                + " (e.g. a provider's batch queue, enqueued_tokens=2000000).",
            "An acquire waits in line until its load of DIM fits; the room comes back when its"
                + " permit is released or its lease expires, never with time."})
    private List<Hold> holds = new ArrayList<>();

    @Option(names = "--max-waiting", paramLabel = "N",
        description = "Waiting-room size; 0 (default) for the server's default.")
    private int maxWaiting;

    @Option(names = "--force", description = "Set a limit that a limits file manages (refused without it): it"
        + " is then changed by hand, and the file's next apply reports it as drift and puts it back.")
    private boolean force;

    @Option(names = "--lease-ttl", paramLabel = "DURATION", converter = Durations.Converter.class,
        description = "Lease of a concurrency slot, e.g. 30s; unset for the server's default.")
    private Duration leaseTtl;

    @Option(names = "--jitter", paramLabel = "DURATION", converter = Durations.Converter.class,
        description = {
            "How late a granted call may reach the upstream and still fit its limit, e.g. 20ms;"
                + " 0 for none. Unset: 20ms (less when a burst refills faster).",
            "At burst 1 it lowers the rate a little (60/min with 20ms: 58.8/min); a larger"
                + " burst absorbs it. Must be under every rate's burst refill time."})
    private Duration jitter;

    @Option(names = "--share", paramLabel = Tenants.SHARE_FORM, converter = Tenants.ShareConverter.class,
        description = {"A tenant's weight in the fair sharing of the quota, repeatable, e.g. search=3;"
            + " tenants not named weigh 1."})
    private List<Tenants.Share> shares = new ArrayList<>();

    @Option(names = "--floor", paramLabel = Tenants.FLOOR_FORM, converter = Tenants.FloorConverter.class,
        description = {"The percent of the quota a tenant is guaranteed while it has demand, repeatable,"
            + " e.g. search=40%; the floors sum to at most 100%."})
    private List<Tenants.Floor> floors = new ArrayList<>();

    @Option(names = "--cap", paramLabel = Tenants.CAP_FORM, converter = Tenants.CapConverter.class,
        description = {"A tenant's own ceiling inside the quota on one of its dimensions, repeatable,"
            + " e.g. research=tokens=20000/min; never above the limit's own rate."})
    private List<Tenants.Cap> caps = new ArrayList<>();

    @Option(names = "--learn", paramLabel = "PROVIDER",
        description = {
            "Learn the rates from the provider's rate-limit headers that workers report:"
                + " openai, azure or anthropic.",
            "Without --rate it starts from a conservative limit (openai and azure:"
                + " requests=60/min:1 tokens=10000/min:83; anthropic: requests=50/min:1"
                + " tokens=24000/min:200 input-tokens=20000/min:166 output-tokens=4000/min:33)."})
    private String learn;

    @Option(names = "--learn-ceiling", paramLabel = Rates.FORM, converter = Rates.Converter.class,
        description = "With --learn, repeatable: the most learning may set on a dimension of the"
            + " limit, e.g. requests=500/min (a burst given here is ignored).")
    private List<RateDimension> ceilings = new ArrayList<>();

    @Override
    public Integer call() {
      if (learn != null && rates.isEmpty() && Learning.starting(learn) != null) {
        rates = new ArrayList<>(Learning.starting(learn));
      }
      validate();
      Limit.Builder limit = Limit.newBuilder()
          .setResource(resource)
          .addAllRates(rates)
          .setConcurrency(concurrency)
          .setMaxWaiting(maxWaiting);
      holds.forEach(h -> limit.putHolds(h.name(), h.amount()));
      if (leaseTtl != null) {
        limit.setLeaseTtl(Durations.toProto(leaseTtl));
      }
      if (jitter != null) {
        limit.setJitter(Durations.toProto(jitter));
      }
      try {
        Tenants.apply(limit, shares, floors, caps);
      } catch (IllegalArgumentException e) {
        throw usage(e.getMessage());
      }
      if (learn != null) {
        limit.setLearn(LearnSettings.newBuilder().setProvider(learn).addAllCeilings(ceilings));
      }
      SetLimitRequest request = SetLimitRequest.newBuilder().setLimit(limit).setForce(force).build();
      SetLimitResponse response;
      try (AdminClient admin = client.connect()) {
        response = admin.call(stub -> stub.setLimit(request));
      }
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, response);
      } else {
        out.println((response.getCreated() ? "created" : "replaced") + kind(resource)
            + response.getLimit().getResource());
        Output.printLimit(out, response.getLimit());
      }
      Rates.warnDefaultUsdBurst(spec.commandLine().getErr(), rates, response.getLimit());
      return 0;
    }

    private void validate() {
      if (learn != null && Learning.starting(learn) == null) {
        throw usage(Learning.unknown(learn));
      }
      if (learn == null && !ceilings.isEmpty()) {
        throw usage("--learn-ceiling limits a learned limit: add --learn openai (or azure, anthropic),"
            + " or give the rate itself with --rate");
      }
      for (RateDimension c : ceilings) {
        if (rates.stream().noneMatch(r -> r.getName().equals(c.getName()))) {
          throw usage("--learn-ceiling " + c.getName() + " names no rate of this limit (its rates: "
              + String.join(", ", rates.stream().map(RateDimension::getName).toList()) + "): add --rate "
              + c.getName() + "=N/min or drop that ceiling");
        }
      }
      if (rates.isEmpty() && concurrency == 0 && holds.isEmpty()) {
        throw usage("give at least one --rate, a --concurrency cap or a --hold,"
            + " e.g. --rate " + Rates.EXAMPLE.replace(" or ", " --rate "));
      }
      Set<String> names = new HashSet<>();
      for (RateDimension r : rates) {
        if (!names.add(r.getName())) {
          throw usage("dimension '" + r.getName() + "' is given twice; give each --rate"
              + " dimension once");
        }
      }
      for (Hold h : holds) {
        if (!names.add(h.name())) {
          throw usage("dimension '" + h.name() + "' is given twice (--rate or --hold); a dimension is either a"
              + " rate or held, once");
        }
      }
      if (concurrency < 0) {
        throw usage("--concurrency must be >= 0 (0 for no cap), got " + concurrency);
      }
      if (maxWaiting < 0) {
        throw usage("--max-waiting must be >= 0 (0 for the server default), got " + maxWaiting);
      }
      if (leaseTtl != null && leaseTtl.isZero()) {
        throw usage("--lease-ttl must be more than 0; leave it out for the server default");
      }
    }

    private ParameterException usage(String message) {
      return new ParameterException(spec.commandLine(), message);
    }
  }

  /** A held dimension given on the command line ({@code --hold DIM=AMOUNT}). */
  record Hold(String name, long amount) {}

  /** Reads {@code DIM=AMOUNT}; the server checks the name and the range. */
  static final class HoldConverter implements picocli.CommandLine.ITypeConverter<Hold> {
    @Override
    public Hold convert(String value) {
      int eq = value.indexOf('=');
      String problem = "--hold takes DIM=AMOUNT, a dimension and the most the permits alive at once may hold"
          + " of it, e.g. enqueued_tokens=2000000; got '" + value + "'";
      if (eq <= 0) {
        throw new picocli.CommandLine.TypeConversionException(problem);
      }
      try {
        return new Hold(value.substring(0, eq), Long.parseLong(value.substring(eq + 1).replace("_", "")));
      } catch (NumberFormatException e) {
        throw new picocli.CommandLine.TypeConversionException(problem);
      }
    }
  }

  @Command(name = "get", mixinStandardHelpOptions = true,
      description = "Shows the limit of one resource (of a pool: its members; see sluice pool get).")
  static final class GetLimit implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Mixin
    private Output output;
    @Parameters(index = "0", paramLabel = "NAME", description = "Resource name.")
    private String resource;

    @Override
    public Integer call() {
      Limit limit;
      java.util.Map<String, Double> available = null;
      try (AdminClient admin = client.connect()) {
        limit = admin.call(stub -> stub.getLimit(
            GetLimitRequest.newBuilder().setResource(resource).build()));
        if (limit.getHoldsCount() > 0 && !output.json) {
          // What the live permits hold now: each held dimension's cap less what is available.
          var stats = admin.call(stub -> stub.getStats(
              dev.sluice.proto.v1.GetStatsRequest.newBuilder().setResource(resource).build()));
          available = stats.getResourcesCount() == 0 ? null : stats.getResources(0).getAvailableMap();
        }
      }
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, limit);
      } else if (limit.getMembersCount() > 0) {
        out.println("'" + resource + "' is a pool of " + String.join(", ", limit.getMembersList())
            + ", not a limit of its own: sluice pool get " + resource + " shows its members' limits");
      } else {
        if (!limit.getTemplate().isEmpty()) {
          out.println(resource + ": no limit of its own, from template '" + limit.getTemplate() + "'");
        }
        Output.printLimit(out, limit, available);
      }
      return 0;
    }
  }

  /** " template " for a name with a wildcard (a template's pattern), else " limit ". */
  static String kind(String name) {
    return name.indexOf('*') >= 0 || name.indexOf('?') >= 0 ? " template " : " limit ";
  }

  @Command(name = "list", mixinStandardHelpOptions = true,
      description = "Lists limits, sorted by resource name; a pool shows as 'pool of' its members"
          + " (sluice pool list lists the pools alone).")
  static final class ListLimits implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Mixin
    private Output output;
    @Option(names = "--prefix", paramLabel = "P", defaultValue = "",
        description = "Only resources whose name starts with P.")
    private String prefix;

    @Override
    public Integer call() {
      ListLimitsResponse response;
      try (AdminClient admin = client.connect()) {
        response = admin.call(stub -> stub.listLimits(
            ListLimitsRequest.newBuilder().setPrefix(prefix).build()));
      }
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, response);
        return 0;
      }
      if (response.getLimitsCount() == 0) {
        out.println(prefix.isEmpty() ? "no limits" : "no limits with prefix '" + prefix + "'");
      } else {
        limits(response).print(out);
      }
      if (response.getTemplatesCount() > 0) {
        out.println();
        Table t = new Table("TEMPLATE", "RATES", "CONCURRENCY", "MAX WAITING", "LEASE TTL", "TENANTS");
        response.getTemplatesList().forEach(l -> row(t, l));
        t.print(out);
      }
      return 0;
    }

    private static Table limits(ListLimitsResponse response) {
      Table t = new Table("RESOURCE", "RATES", "CONCURRENCY", "MAX WAITING", "LEASE TTL", "TENANTS");
      for (Limit l : response.getLimitsList()) {
        if (l.getMembersCount() > 0) { // a pool: no limit of its own (sluice pool get shows its members')
          t.row(l.getResource(), "pool of " + String.join(", ", l.getMembersList()), "-", "-", "-", "-");
          continue;
        }
        row(t, l);
      }
      return t;
    }

    private static void row(Table t, Limit l) {
      t.row(l.getResource(), Output.rates(l),
          l.getConcurrency() == 0 ? "-" : l.getConcurrency(),
          l.getMaxWaiting() == 0 ? "-" : l.getMaxWaiting(),
          l.hasLeaseTtl() ? Durations.format(l.getLeaseTtl()) : "-",
          Tenants.summary(l));
    }
  }

  @Command(name = "delete", mixinStandardHelpOptions = true,
      description = "Deletes the limit of a resource; its waiters fail with NOT_FOUND.")
  static final class DeleteLimit implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Parameters(index = "0", paramLabel = "NAME", description = "Resource name.")
    private String resource;
    @Option(names = "--force", description = "Delete a limit that a limits file manages (refused without it);"
        + " the file's next apply adds it again.")
    private boolean force;

    @Override
    public Integer call() {
      try (AdminClient admin = client.connect()) {
        admin.call(stub -> stub.deleteLimit(
            DeleteLimitRequest.newBuilder().setResource(resource).setForce(force).build()));
      }
      spec.commandLine().getOut().println("deleted" + kind(resource) + resource);
      return 0;
    }
  }

  @Command(name = "apply", mixinStandardHelpOptions = true,
      description = {"Makes the coordinator's limits match a limits file (docs/limits-file.md): prints the"
          + " diff (+ added, ~ changed with before → after, - removed) and applies it.",
          "Exit 0: applied, or nothing to change; 2: the file is not valid (its line and column are"
              + " named, nothing changed); 1: the coordinator refused a change."},
      footer = {"", "Examples:",
          "  sluice limit apply -f limits.yaml --dry-run",
          "  sluice limit apply -f limits.yaml --prune"})
  static final class ApplyLimits implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;

    @Option(names = {"-f", "--file"}, required = true, paramLabel = "FILE",
        description = "The limits file (YAML or JSON); - reads standard input.")
    private String file;

    @Option(names = "--dry-run", description = "Only print the diff.")
    private boolean dryRun;

    @Option(names = "--prune", description = "Also remove the limits the file does not name (without it they"
        + " are listed and left).")
    private boolean prune;

    @Option(names = "--force", description = "Take over limits another limits file manages (refused without it),"
        + " and let --prune remove them.")
    private boolean force;

    @Override
    public Integer call() throws java.io.IOException {
      PrintWriter out = spec.commandLine().getOut();
      PrintWriter err = spec.commandLine().getErr();
      String text;
      String source = file.equals("-") ? "stdin" : java.nio.file.Path.of(file).getFileName().toString();
      try {
        text = file.equals("-") ? new String(System.in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8)
            : java.nio.file.Files.readString(java.nio.file.Path.of(file));
      } catch (java.nio.file.NoSuchFileException e) {
        err.println("error: limits file " + file + " does not exist: check the path");
        return 2;
      } catch (java.nio.charset.MalformedInputException e) {
        err.println("error: limits file " + file + " is not UTF-8 text: save it as UTF-8");
        return 2;
      }
      try {
        // Checked here first, so a bad file is refused with its line without a coordinator.
        dev.sluice.server.limits.LimitsDocument.parse(text, source);
      } catch (dev.sluice.server.limits.LimitsFileException e) {
        err.println("error: " + e.getMessage());
        return 2;
      }
      dev.sluice.proto.v1.ApplyLimitsResponse r;
      try (AdminClient admin = client.connect()) {
        r = admin.call(stub -> stub.applyLimits(dev.sluice.proto.v1.ApplyLimitsRequest.newBuilder()
            .setDocument(text).setSource(source).setDryRun(dryRun).setPrune(prune).setForce(force).build()));
      } catch (CliFailure e) {
        // The coordinator's own check of the file (its defaults, its pools): still the file's fault.
        boolean fileError = e.getMessage().startsWith("INVALID_ARGUMENT: " + source + ":");
        err.println("error: " + e.getMessage());
        return fileError ? 2 : 1;
      }
      int changes = 0;
      for (dev.sluice.proto.v1.LimitChange c : r.getChangesList()) {
        String sign = switch (c.getKind()) {
          case ADDED -> "+ ";
          case CHANGED -> "~ ";
          case REMOVED -> "- ";
          case DRIFTED -> "! ";
          default -> "? ";
        };
        if (c.getKind() != dev.sluice.proto.v1.LimitChange.Kind.UNMANAGED) {
          changes++;
          out.println(sign + c.getResource());
          c.getDetailsList().forEach(d -> out.println("    " + d));
        } else {
          out.println(sign + c.getResource() + " (not in " + source + ": left as it is; --prune removes it)");
        }
      }
      String summary = summary(r.getChangesList());
      if (changes == 0) {
        long left = r.getChangesCount();
        out.println("no changes" + (left == 0 ? "" : " (" + left + " not in the file, left as they are)"));
      } else if (dryRun) {
        out.println("dry run, nothing applied: " + summary);
      } else {
        out.println("applied " + source + " (sha256 " + r.getDocumentHash() + "): " + summary);
      }
      return 0;
    }

    private static String summary(List<dev.sluice.proto.v1.LimitChange> changes) {
      int[] n = new int[6];
      changes.forEach(c -> n[Math.min(c.getKindValue(), 5)]++);
      String s = n[1] + " added, " + n[2] + " changed, " + n[3] + " removed";
      s = n[5] == 0 ? s : s + ", " + n[5] + " drifted (changed by hand, put back)";
      return n[4] == 0 ? s : s + ", " + n[4] + " not in the file";
    }
  }

  @Command(name = "export", mixinStandardHelpOptions = true,
      description = "Writes every limit as a limits file: applying it again changes nothing.",
      footer = {"", "Example:", "  sluice limit export > limits.yaml"})
  static final class ExportLimits implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;

    @Option(names = {"-o", "--output"}, paramLabel = "FILE", description = "Write to FILE instead of standard"
        + " output (replaced whole).")
    private java.nio.file.Path output;

    @Override
    public Integer call() throws java.io.IOException {
      String doc;
      try (AdminClient admin = client.connect()) {
        doc = admin.call(stub -> stub.exportLimits(dev.sluice.proto.v1.ExportLimitsRequest.getDefaultInstance()))
            .getDocument();
      }
      if (output == null) {
        spec.commandLine().getOut().print(doc);
        spec.commandLine().getOut().flush();
      } else {
        java.nio.file.Path tmp = java.nio.file.Files.createTempFile(
            output.toAbsolutePath().getParent(), ".limits", ".tmp");
        java.nio.file.Files.writeString(tmp, doc);
        java.nio.file.Files.move(tmp, output, java.nio.file.StandardCopyOption.REPLACE_EXISTING,
            java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        spec.commandLine().getOut().println("wrote " + output);
      }
      return 0;
    }
  }

  @Command(name = "history", mixinStandardHelpOptions = true,
      description = "Shows the last changes of a resource's limit, newest first: when, who (an API key, a limits"
          + " file and its hash, or local) and each field before → after.",
      footer = {"", "Example:", "  sluice limit history openai -n 5"})
  static final class History implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Mixin
    private Output output;
    @Parameters(index = "0", paramLabel = "NAME", description = "Resource name.")
    private String resource;
    @Option(names = {"-n", "--last"}, paramLabel = "N", defaultValue = "20",
        description = "How many changes: 1 to 50 (default ${DEFAULT-VALUE}).")
    private int last;

    @Override
    public Integer call() {
      if (last < 1 || last > 50) {
        throw new ParameterException(spec.commandLine(), "-n " + last + " is out of range: use 1 to 50 (the"
            + " coordinator keeps the last 50 changes of each resource)");
      }
      dev.sluice.proto.v1.LimitHistoryResponse r;
      try (AdminClient admin = client.connect()) {
        r = admin.call(stub -> stub.limitHistory(dev.sluice.proto.v1.LimitHistoryRequest.newBuilder()
            .setResource(resource).setLimit(last).build()));
      }
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, r);
        return 0;
      }
      if (r.getChangesCount() == 0) {
        out.println("no changes of '" + resource + "' kept (the coordinator keeps them from the time it"
            + " started on the embedded store, or for the 10 000 resources changed last)");
        return 0;
      }
      for (dev.sluice.proto.v1.LimitHistoryEntry e : r.getChangesList()) {
        out.println(java.time.Instant.ofEpochMilli(e.getAtUnixMillis()) + "  " + e.getAction() + " by "
            + e.getWho());
        e.getChangesList().forEach(c -> out.println("    " + c));
      }
      return 0;
    }
  }
}
