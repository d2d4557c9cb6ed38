package dev.sluice.cli;

import dev.sluice.proto.v1.DeletePriceRequest;
import dev.sluice.proto.v1.ListPricesRequest;
import dev.sluice.proto.v1.ListPricesResponse;
import dev.sluice.proto.v1.ModelPrice;
import dev.sluice.proto.v1.SetPriceRequest;
import java.io.PrintWriter;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code sluice price set|list|delete}: the coordinator's price table, which turns a call's
 * token counts into the cost dimension {@code usd} of limits that have one.
 */
@Command(name = "price", mixinStandardHelpOptions = true,
    description = {"Prices per model, in US dollars per million tokens: acquires that name a model are charged",
        "usd on limits with a usd dimension (--rate usd=50/day), and settled from the actual tokens."},
    subcommands = {PriceCommand.SetPrice.class, PriceCommand.ListPrices.class, PriceCommand.DeletePrice.class})
final class PriceCommand implements Callable<Integer> {
  @Spec
  private CommandSpec spec;

  @Override
  public Integer call() {
    spec.commandLine().usage(spec.commandLine().getOut());
    return 0;
  }

  private static final String PRICE = "DOLLARS/M";

  /** {@code sluice price set MODEL --input 0.15/M --output 0.60/M [--cached-input 0.075/M]}. */
  @Command(name = "set", mixinStandardHelpOptions = true,
      description = "Creates or replaces the price of a model, stored durably, and prints it.")
  static final class SetPrice implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Mixin
    private Output output;
    @Parameters(index = "0", paramLabel = "MODEL", description = "Model name, e.g. gpt-4o-mini.")
    private String model;
    @Option(names = "--input", required = true, paramLabel = PRICE,
        description = "US dollars per million input tokens, e.g. 0.15/M.")
    private String input;
    @Option(names = "--output", required = true, paramLabel = PRICE,
        description = "US dollars per million output tokens, e.g. 0.60/M.")
    private String outputPrice;
    @Option(names = "--cached-input", paramLabel = PRICE,
        description = "US dollars per million cached input tokens, e.g. 0.075/M. Default: the input price.")
    private String cachedInput;

    @Override
    public Integer call() {
      ModelPrice.Builder p = ModelPrice.newBuilder().setModel(model).setInput(input).setOutput(outputPrice);
      if (cachedInput != null) {
        p.setCachedInput(cachedInput);
      }
      ModelPrice stored;
      try (AdminClient admin = client.connect()) {
        stored = admin.call(stub -> stub.setPrice(SetPriceRequest.newBuilder().setPrice(p).build()));
      }
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, stored);
        return 0;
      }
      out.println("price of " + stored.getModel() + ": input $" + stored.getInput() + "/M, output $"
          + stored.getOutput() + "/M, cached input $" + stored.getCachedInput() + "/M");
      return 0;
    }
  }

  @Command(name = "list", mixinStandardHelpOptions = true,
      description = "Lists every price, in US dollars per million tokens.")
  static final class ListPrices implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Mixin
    private Output output;

    @Override
    public Integer call() {
      ListPricesResponse response;
      try (AdminClient admin = client.connect()) {
        response = admin.call(stub -> stub.listPrices(ListPricesRequest.getDefaultInstance()));
      }
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, response);
        return 0;
      }
      if (response.getPricesCount() == 0) {
        out.println("no prices: set one with `sluice price set MODEL --input 0.15/M --output 0.60/M`");
        return 0;
      }
      Table t = new Table("MODEL", "INPUT $/M", "OUTPUT $/M", "CACHED INPUT $/M");
      for (ModelPrice p : response.getPricesList()) {
        t.row(p.getModel(), p.getInput(), p.getOutput(), p.getCachedInput());
      }
      t.print(out);
      return 0;
    }
  }

  @Command(name = "delete", mixinStandardHelpOptions = true,
      description = "Deletes the price of a model; acquires that need it are refused from then on.")
  static final class DeletePrice implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Parameters(index = "0", paramLabel = "MODEL", description = "Model name.")
    private String model;

    @Override
    public Integer call() {
      try (AdminClient admin = client.connect()) {
        admin.call(stub -> stub.deletePrice(DeletePriceRequest.newBuilder().setModel(model).build()));
      }
      spec.commandLine().getOut().println("deleted price of " + model);
      return 0;
    }
  }
}
