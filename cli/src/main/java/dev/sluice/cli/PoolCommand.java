package dev.sluice.cli;

import dev.sluice.proto.v1.DeleteLimitRequest;
import dev.sluice.proto.v1.GetLimitRequest;
import dev.sluice.proto.v1.GetStatsRequest;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.ListLimitsRequest;
import dev.sluice.proto.v1.ListLimitsResponse;
import dev.sluice.proto.v1.ResourceStats;
import dev.sluice.proto.v1.SetLimitRequest;
import dev.sluice.proto.v1.SetLimitResponse;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.function.Supplier;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code sluice pool create|get|list|delete}: a pool is a limit with members (the Admin API's
 * {@code Limit.members}), so these are the limit calls, each checking that the name is a pool.
 */
@Command(name = "pool", mixinStandardHelpOptions = true,
    description = {"Create, show, list and delete pools: one name over several resources (API keys or projects),",
        "each with its own limit; an acquire on the pool is granted by whichever member can first."},
    subcommands = {
        PoolCommand.Create.class, PoolCommand.Get.class, PoolCommand.ListPools.class, PoolCommand.Delete.class})
final class PoolCommand implements Callable<Integer> {

  static final String NO_MEMBER = "a pool needs at least one --member: name the resources it grants from,"
      + " e.g. --member openai-proj-a --member openai-proj-b (each with its own limit: sluice limit set)";

  @Spec
  private CommandSpec spec;

  @Override
  public Integer call() {
    throw new ParameterException(spec.commandLine(), "missing subcommand: create, get, list or delete");
  }

  @Command(name = "create", mixinStandardHelpOptions = true,
      description = {"Creates a pool of resources that have limits, or replaces an existing pool's members.",
          "Workers acquire on the pool and call the upstream of the member the permit names."},
      footer = {"", "Examples:",
          "  sluice limit set openai-proj-a --rate requests=500/min --rate tokens=200000/min",
          "  sluice limit set openai-proj-b --rate requests=500/min --rate tokens=200000/min",
          "  sluice pool create openai --member openai-proj-a --member openai-proj-b"})
  static final class Create implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Mixin
    private Output output;
    @Parameters(index = "0", paramLabel = "NAME", description = "Pool name: 1-200 characters of [A-Za-z0-9._:/-].")
    private String name;
    @Option(names = "--member", paramLabel = "RESOURCE",
        description = "A member, repeatable, in order (ties go to the earlier): a resource with its own limit,"
            + " not a pool.")
    private List<String> members = new ArrayList<>();
    @Option(names = "--force", description = "Change a pool that a limits file manages (refused without it); the"
        + " file's next apply reports it as drift and puts it back.")
    private boolean force;

    @Override
    public Integer call() {
      if (members.isEmpty()) {
        throw new ParameterException(spec.commandLine(), NO_MEMBER);
      }
      SetLimitRequest request = SetLimitRequest.newBuilder()
          .setLimit(Limit.newBuilder().setResource(name).addAllMembers(members)).setForce(force).build();
      SetLimitResponse response;
      try (AdminClient admin = client.connect()) {
        response = admin.call(stub -> stub.setLimit(request));
      }
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, response);
      } else {
        out.println((response.getCreated() ? "created" : "changed") + " pool " + name + ": "
            + String.join(", ", response.getLimit().getMembersList()));
      }
      return 0;
    }
  }

  @Command(name = "get", mixinStandardHelpOptions = true,
      description = "Shows a pool's members, each with its limit and whether it is paused.")
  static final class Get implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Mixin
    private Output output;
    @Parameters(index = "0", paramLabel = "NAME", description = "Pool name.")
    private String name;

    @Override
    public Integer call() {
      Limit pool;
      List<ResourceStats> members = new ArrayList<>();
      List<String> missing = new ArrayList<>();
      try (AdminClient admin = client.connect()) {
        pool = pool(admin, name);
        for (String m : pool.getMembersList()) {
          try {
            members.add(admin.call(stub -> stub.getStats(GetStatsRequest.newBuilder().setResource(m).build()))
                .getResources(0));
          } catch (CliFailure e) {
            if (!is(e, Status.Code.NOT_FOUND)) {
              throw e;
            }
            missing.add(m); // deleted since the pool was set: the pool grants from the others
          }
        }
      }
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        StringBuilder b = new StringBuilder("{\"pool\": ").append(Output.toJson(pool, true)).append(", \"members\": [");
        for (int i = 0; i < members.size(); i++) {
          b.append(i == 0 ? "" : ", ").append(Output.toJson(members.get(i), true));
        }
        out.println(b.append("], \"missing\": [")
            .append(String.join(", ", missing.stream().map(m -> "\"" + m + "\"").toList())).append("]}"));
        return 0;
      }
      out.println("pool " + name + ": " + pool.getMembersCount() + " member" + (pool.getMembersCount() == 1 ? "" : "s"));
      Table t = new Table("MEMBER", "RATES", "CONCURRENCY", "PAUSED", "IN FLIGHT", "WAITING", "GRANTED");
      for (ResourceStats s : members) {
        Limit l = s.getLimit();
        t.row(s.getResource(), Output.rates(l), l.getConcurrency() == 0 ? "-" : l.getConcurrency(),
            !s.getPaused() ? "no" : s.hasPausedFor() ? "for " + Durations.formatLeft(s.getPausedFor()) : "until resumed",
            s.getInFlight(), s.getWaitingMap().values().stream().mapToLong(Long::longValue).sum(), s.getGranted());
      }
      for (String m : missing) {
        t.row(m, "no limit (deleted?): set one with sluice limit set " + m, "-", "-", "-", "-", "-");
      }
      t.print(out);
      return 0;
    }
  }

  @Command(name = "list", mixinStandardHelpOptions = true, description = "Lists the pools, sorted by name.")
  static final class ListPools implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Mixin
    private Output output;

    @Override
    public Integer call() {
      ListLimitsResponse all;
      try (AdminClient admin = client.connect()) {
        all = admin.call(stub -> stub.listLimits(ListLimitsRequest.getDefaultInstance()));
      }
      List<Limit> pools = all.getLimitsList().stream().filter(l -> l.getMembersCount() > 0).toList();
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, ListLimitsResponse.newBuilder().addAllLimits(pools));
        return 0;
      }
      if (pools.isEmpty()) {
        out.println("no pools (create one with sluice pool create NAME --member RESOURCE ...)");
        return 0;
      }
      Table t = new Table("POOL", "MEMBERS");
      for (Limit p : pools) {
        t.row(p.getResource(), String.join(", ", p.getMembersList()));
      }
      t.print(out);
      return 0;
    }
  }

  @Command(name = "delete", mixinStandardHelpOptions = true,
      description = "Deletes a pool; its members and their limits stay. Its waiters fail with NOT_FOUND.")
  static final class Delete implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Parameters(index = "0", paramLabel = "NAME", description = "Pool name.")
    private String name;
    @Option(names = "--force", description = "Delete a pool that a limits file manages (refused without it).")
    private boolean force;

    @Override
    public Integer call() {
      Limit pool;
      try (AdminClient admin = client.connect()) {
        pool = pool(admin, name);
        admin.call(stub -> stub.deleteLimit(DeleteLimitRequest.newBuilder().setResource(name).setForce(force).build()));
      }
      spec.commandLine().getOut().println("deleted pool " + name + " (its members keep their limits: "
          + String.join(", ", pool.getMembersList()) + ")");
      return 0;
    }
  }

  /** The pool named so; a failure naming the right command when it is a resource's own limit or absent. */
  private static Limit pool(AdminClient admin, String name) {
    Limit l;
    try {
      l = admin.call(stub -> stub.getLimit(GetLimitRequest.newBuilder().setResource(name).build()));
    } catch (CliFailure e) {
      if (is(e, Status.Code.NOT_FOUND)) {
        throw new CliFailure("NOT_FOUND: no pool '" + name + "': sluice pool list shows the pools; create one with"
            + " sluice pool create " + name + " --member RESOURCE ...", e);
      }
      throw e;
    }
    if (l.getMembersCount() == 0) {
      throw new CliFailure("'" + name + "' is a resource with a limit of its own, not a pool: see sluice limit get "
          + name, null);
    }
    return l;
  }

  private static boolean is(CliFailure e, Status.Code code) {
    return e.getCause() instanceof StatusRuntimeException s && s.getStatus().getCode() == code;
  }

  /**
   * Runs a stats call; the engine's refusal of a pool's stats gains the CLI's pointer to {@code
   * sluice pool get}.
   */
  static <T> T statsOf(String resource, Supplier<T> call) {
    try {
      return call.get();
    } catch (CliFailure e) {
      if (is(e, Status.Code.INVALID_ARGUMENT) && e.getMessage().contains("' is a pool of ")) {
        throw new CliFailure(e.getMessage() + "; sluice pool get " + resource + " shows every member", e.getCause());
      }
      throw e;
    }
  }
}
