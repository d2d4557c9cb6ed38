package dev.sluice.bench.jmh;

import java.nio.file.Files;
import java.nio.file.Path;
import org.openjdk.jmh.results.format.ResultFormatType;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.options.ChainedOptionsBuilder;
import org.openjdk.jmh.runner.options.CommandLineOptions;
import org.openjdk.jmh.runner.options.OptionsBuilder;

/**
 * Runs the engine micro-benchmarks with short defaults and a JSON result file the load
 * generator's report picks up:
 *
 * <pre>
 *   java -jar bench/target/sluice-bench.jar jmh                 # EngineBench, -> bench/target/jmh.json
 *   java -jar bench/target/sluice-bench.jar jmh -f 3 -i 10      # any JMH option overrides the default
 * </pre>
 *
 * Defaults: every benchmark in {@code dev.sluice.bench.jmh}, 3 x 1 s warm-up, 5 x 1 s measured,
 * 1 fork, JSON to {@code bench/target/jmh.json} (the directory is created).
 */
public final class JmhMain {

  private JmhMain() {}

  public static void main(String[] args) throws Exception {
    CommandLineOptions cli = new CommandLineOptions(args);
    if (cli.shouldHelp()) {
      cli.showHelp();
      return;
    }
    if (cli.shouldList()) {
      new Runner(new OptionsBuilder().parent(cli).include(includes(cli)).build()).list();
      return;
    }
    ChainedOptionsBuilder b = new OptionsBuilder().parent(cli);
    if (cli.getIncludes().isEmpty()) {
      b.include("dev\\.sluice\\.bench\\.jmh\\..*");
    }
    if (cli.getResultFormat().hasValue() == false) {
      b.resultFormat(ResultFormatType.JSON);
    }
    if (cli.getResult().hasValue() == false) {
      Path out = Path.of("bench", "target", "jmh.json");
      Files.createDirectories(out.getParent());
      b.result(out.toString());
    }
    new Runner(b.build()).run();
  }

  private static String includes(CommandLineOptions cli) {
    return cli.getIncludes().isEmpty() ? "dev\\.sluice\\.bench\\.jmh\\..*" : String.join("|", cli.getIncludes());
  }
}
