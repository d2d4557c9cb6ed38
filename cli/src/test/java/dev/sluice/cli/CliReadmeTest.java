package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.PrintWriter;
import java.io.Writer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Model.PositionalParamSpec;

/**
 * Keeps cli/README.md honest: every command and subcommand of the real picocli tree has a
 * section ({@code ### `sluice limit set`}) naming each of its options and parameters, the options
 * shared by every client command are in "Client options" with their environment variables, and
 * each {@code serve} flag has its row, with its variable, in docs/configuration.md. So a command or
 * a flag added without docs fails here, and so does a section left behind for a command removed.
 */
class CliReadmeTest {

  private static final Path README = Path.of("README.md");
  private static final Path CONFIGURATION = Path.of("..", "docs", "configuration.md");
  private static final Pattern ENV = Pattern.compile("\\$\\{env:(SLUICE_[A-Z0-9_]+)");
  private static final Pattern COMMAND_HEADING = Pattern.compile("(?m)^### `(sluice(?: [a-z-]+)*)`\\s*$");

  private static CommandLine root() {
    PrintWriter nowhere = new PrintWriter(Writer.nullWriter());
    return SluiceCli.commandLine(nowhere, nowhere);
  }

  private static void walk(CommandLine cmd, List<CommandLine> into) {
    into.add(cmd);
    for (CommandLine sub : new LinkedHashSet<>(cmd.getSubcommands().values())) {
      walk(sub, into);
    }
  }

  /** Every command below {@code sluice} itself, by qualified name ("sluice limit set"). */
  static Stream<String> commands() {
    List<CommandLine> all = new ArrayList<>();
    walk(root(), all);
    return all.stream().skip(1).map(c -> c.getCommandSpec().qualifiedName());
  }

  private static CommandSpec spec(String qualifiedName) {
    CommandLine cmd = root();
    for (String name : qualifiedName.split(" ")) {
      if (!name.equals("sluice")) {
        cmd = cmd.getSubcommands().get(name);
        assertThat(cmd).as("command %s", qualifiedName).isNotNull();
      }
    }
    return cmd.getCommandSpec();
  }

  private static String readme() throws Exception {
    return Files.readString(README);
  }

  /** From a heading line to the next heading of any level. */
  static String section(String doc, String headingLine) {
    int start = -1;
    for (int i = doc.indexOf(headingLine); i >= 0; i = doc.indexOf(headingLine, i + 1)) {
      if ((i == 0 || doc.charAt(i - 1) == '\n')
          && (i + headingLine.length() == doc.length() || doc.charAt(i + headingLine.length()) == '\n')) {
        start = i;
        break;
      }
    }
    assertThat(start).as("cli/README.md has the heading line '%s'", headingLine).isNotNegative();
    Matcher next = Pattern.compile("(?m)^#{1,6} ").matcher(doc);
    int end = next.find(start + headingLine.length()) ? next.start() : doc.length();
    return doc.substring(start, end);
  }

  /** {@code word} as a whole token: {@code --tls} is not found in {@code --tls-ca}. */
  static boolean names(String text, String word) {
    return Pattern.compile("(?<![\\w-])" + Pattern.quote(word) + "(?![\\w-])").matcher(text).find();
  }

  private static Set<String> optionNamesOf(CommandSpec spec, Class<?> mixin) {
    Set<String> out = new HashSet<>();
    for (CommandSpec m : spec.mixins().values()) {
      if (mixin.isInstance(m.userObject())) {
        m.options().forEach(o -> out.addAll(Arrays.asList(o.names())));
      }
    }
    return out;
  }

  private static String env(OptionSpec option) {
    String raw = option.defaultValueString(false); // the annotation's text, ${env:...} not resolved
    Matcher m = ENV.matcher(raw == null ? "" : raw);
    return m.find() ? m.group(1) : null;
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("commands")
  void theReadmeNamesEveryOptionAndParameterOfTheCommand(String qualifiedName) throws Exception {
    CommandSpec spec = spec(qualifiedName);
    String readme = readme();
    String section = section(readme, "### `" + qualifiedName + "`");
    String common = section(readme, "## What every command has");
    String client = section(readme, "### Client options");
    String configuration = Files.readString(CONFIGURATION);
    Set<String> clientOptions = optionNamesOf(spec, ClientOptions.class);

    // What a user sees: the command's own --help.
    String[] args = Stream.concat(Arrays.stream(qualifiedName.split(" ")).skip(1), Stream.of("--help"))
        .toArray(String[]::new);
    CliRun help = CliRun.of(args);
    assertThat(help.exit()).as("sluice %s --help", String.join(" ", args)).isZero();

    if (!clientOptions.isEmpty()) {
      assertThat(section).as("the section of %s points to the client options", qualifiedName)
          .contains("(#client-options)");
    }
    for (OptionSpec option : spec.options()) {
      if (option.hidden()) {
        continue;
      }
      String shown = option.longestName();
      assertThat(names(help.out(), shown)).as("'%s --help' shows %s", qualifiedName, shown).isTrue();
      boolean shared = clientOptions.contains(shown);
      String where = option.usageHelp() || option.versionHelp() ? common : shared ? client : section;
      for (String name : option.names()) {
        assertThat(names(where, name))
            .as("cli/README.md documents %s of %s (in %s)", name, qualifiedName, where.lines().findFirst().orElse(""))
            .isTrue();
      }
      String variable = env(option);
      if (variable == null) {
        continue;
      }
      if (qualifiedName.equals("sluice serve")) {
        assertThat(configuration.lines().filter(l -> l.startsWith("|"))
            .anyMatch(l -> l.contains("`" + shown + "`") && l.contains("`" + variable + "`")))
            .as("docs/configuration.md has a row for serve %s with its variable %s", shown, variable)
            .isTrue();
      } else {
        assertThat(names(where, variable)).as("cli/README.md names %s, the variable of %s", variable, shown)
            .isTrue();
      }
    }
    for (PositionalParamSpec parameter : spec.positionalParameters()) {
      if (!parameter.hidden()) {
        assertThat(names(section, parameter.paramLabel()))
            .as("cli/README.md names the parameter %s of %s", parameter.paramLabel(), qualifiedName)
            .isTrue();
      }
    }
  }

  @Test
  void everyCommandSectionIsForACommandThatExists() throws Exception {
    Set<String> real = new HashSet<>(commands().toList());
    Matcher m = COMMAND_HEADING.matcher(readme());
    List<String> documented = new ArrayList<>();
    while (m.find()) {
      documented.add(m.group(1));
    }
    assertThat(documented).as("command sections of cli/README.md").isNotEmpty();
    assertThat(documented).as("command sections of cli/README.md").containsExactlyInAnyOrderElementsOf(real);
  }

  @Test
  void theRootCommandsOptionsAreTheCommonOnes() throws Exception {
    String common = section(readme(), "## What every command has");
    for (OptionSpec option : root().getCommandSpec().options()) {
      for (String name : option.names()) {
        assertThat(names(common, name)).as("cli/README.md documents sluice %s", name).isTrue();
      }
    }
  }

  /** The checks above must be able to fail: a flag that is nowhere is not found. */
  @Test
  void aFlagTheReadmeDoesNotNameIsCaught() throws Exception {
    String section = section(readme(), "### `sluice limit set`");
    assertThat(names(section, "--rate")).isTrue();
    assertThat(names(section, "--rat")).isFalse();
    assertThat(names(section(readme(), "### Client options"), "--tls")).isTrue();
    assertThat(names("`--tls-ca FILE`", "--tls")).isFalse();
  }
}
