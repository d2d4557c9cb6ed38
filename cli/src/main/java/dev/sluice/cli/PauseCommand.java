package dev.sluice.cli;

import dev.sluice.proto.v1.PauseRequest;
import dev.sluice.proto.v1.PauseResponse;
import dev.sluice.proto.v1.ResumeRequest;
import java.io.PrintWriter;
import java.time.Duration;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code sluice pause NAME [--for D]}. */
@Command(name = "pause", mixinStandardHelpOptions = true,
    description = "Stops granting on a resource, for a while or until `sluice resume`.")
final class PauseCommand implements Callable<Integer> {
  @Spec
  private CommandSpec spec;
  @Mixin
  private ClientOptions client;
  @Parameters(index = "0", paramLabel = "NAME", description = "Resource name.")
  private String resource;
  @Option(names = "--for", paramLabel = "DURATION", converter = Durations.PauseConverter.class,
      description = "How long, e.g. 30s or 5m (more than 0, at most 1d); unset: until `sluice resume`.")
  private Duration duration;

  @Override
  public Integer call() {
    PauseRequest.Builder request = PauseRequest.newBuilder().setResource(resource);
    if (duration != null) {
      request.setDuration(Durations.toProto(duration));
    }
    PauseResponse response;
    try (AdminClient admin = client.connect()) {
      response = admin.call(stub -> stub.pause(request.build()));
    }
    PrintWriter out = spec.commandLine().getOut();
    out.println("paused " + resource + (response.hasPausedFor()
        ? " for " + Durations.formatLeft(response.getPausedFor())
        : " until `sluice resume " + resource + "`"));
    return 0;
  }

  /** {@code sluice resume NAME}. */
  @Command(name = "resume", mixinStandardHelpOptions = true,
      description = "Clears every pause on a resource (admin and upstream feedback).")
  static final class Resume implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Parameters(index = "0", paramLabel = "NAME", description = "Resource name.")
    private String resource;

    @Override
    public Integer call() {
      try (AdminClient admin = client.connect()) {
        admin.call(stub -> stub.resume(ResumeRequest.newBuilder().setResource(resource).build()));
      }
      spec.commandLine().getOut().println("resumed " + resource);
      return 0;
    }
  }
}
