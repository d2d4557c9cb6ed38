package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The documentation belongs to the repository: in every {@code *.md} file, each relative link or
 * image resolves to a file of the repository (and a {@code #fragment} to a heading of the
 * Markdown file it names), no link or bare URL leads to another site (only local examples:
 * {@code localhost}, {@code 127.0.0.1}, {@code [::1]}, {@code *.example}), and no path climbs out
 * of the repository. So moving a page cannot leave a dead link behind, and nothing points to a
 * document a reader of the repository does not have.
 */
class DocsLinksTest {

  private static final Path REPOSITORY = Path.of("..");

  private static final Pattern FENCE = Pattern.compile("^\\s*(```|~~~)");
  private static final Pattern CODE_SPAN = Pattern.compile("`[^`]*`");
  private static final Pattern LINK = Pattern.compile("!?\\[[^\\]]*\\]\\(\\s*<?([^)\\s>]+)>?(?:\\s+\"[^\"]*\")?\\s*\\)");
  private static final Pattern REFERENCE = Pattern.compile("^\\s{0,3}\\[[^\\]]+\\]:\\s*<?(\\S+?)>?(?:\\s.*)?$");
  private static final Pattern AUTOLINK = Pattern.compile("<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\\s]+)>");
  private static final Pattern BARE_URL = Pattern.compile("(?<![(<\\w])https?://[^\\s)>\\]`*]+");
  private static final Pattern CLIMB = Pattern.compile("(?<![\\w./-])((?:\\.\\./)+[\\w./-]*)");
  private static final Pattern SCHEME = Pattern.compile("^([a-zA-Z][a-zA-Z0-9+.-]*):");
  private static final Pattern HOST = Pattern.compile("^https?://(\\[[^\\]]+\\]|[^/:?#]+)");
  private static final Pattern HEADING = Pattern.compile("^#{1,6}\\s+(.*?)\\s*#*\\s*$");

  /** Markdown files of the repository, leaving out build output, installed packages and dot-dirs. */
  static List<Path> markdownFiles(Path root) throws IOException {
    List<Path> out = new ArrayList<>();
    Files.walkFileTree(root, new SimpleFileVisitor<>() {
      @Override
      public FileVisitResult preVisitDirectory(Path dir, BasicFileAttributes attrs) {
        String name = dir.getFileName() == null ? "" : dir.getFileName().toString();
        boolean skip = !dir.equals(root)
            && (name.startsWith(".") || name.equals("target") || name.equals("node_modules"));
        return skip ? FileVisitResult.SKIP_SUBTREE : FileVisitResult.CONTINUE;
      }

      @Override
      public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) {
        if (file.getFileName().toString().endsWith(".md")) {
          out.add(file);
        }
        return FileVisitResult.CONTINUE;
      }
    });
    return out;
  }

  /** The file's lines with fenced code blocks blanked (their text is not read as Markdown). */
  static List<String> prose(Path file) throws IOException {
    List<String> out = new ArrayList<>();
    boolean fenced = false;
    for (String line : Files.readAllLines(file)) {
      if (FENCE.matcher(line).find()) {
        fenced = !fenced;
        out.add("");
      } else {
        out.add(fenced ? "" : line);
      }
    }
    return out;
  }

  /** The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens. */
  static String slug(String heading) {
    String text = heading.replaceAll("\\[([^\\]]*)\\]\\([^)]*\\)", "$1").strip().toLowerCase(Locale.ROOT);
    return text.replaceAll("[^\\p{L}\\p{N}_\\- ]", "").replace(' ', '-');
  }

  static Set<String> anchors(Path file) throws IOException {
    Map<String, Integer> seen = new HashMap<>();
    Set<String> out = new HashSet<>();
    for (String line : prose(file)) {
      Matcher m = HEADING.matcher(line);
      if (m.matches()) {
        String s = slug(m.group(1));
        Integer n = seen.merge(s, 1, Integer::sum) - 1;
        out.add(n == 0 ? s : s + "-" + n);
      }
    }
    return out;
  }

  private static boolean localExample(String url) {
    Matcher m = HOST.matcher(url);
    if (!m.find()) {
      return false;
    }
    String host = m.group(1).toLowerCase(Locale.ROOT);
    return host.equals("localhost") || host.equals("127.0.0.1") || host.equals("[::1]") || host.endsWith(".example");
  }

  /** Every problem found under {@code root}, one line each: file, line, what, the link. */
  static List<String> problems(Path root) throws IOException {
    Path top = root.toAbsolutePath().normalize();
    List<String> problems = new ArrayList<>();
    Map<Path, Set<String>> anchorCache = new HashMap<>();
    for (Path file : markdownFiles(top)) {
      List<String> lines = prose(file);
      for (int i = 0; i < lines.size(); i++) {
        String where = top.relativize(file) + ":" + (i + 1) + ": ";
        String line = lines.get(i);
        Matcher climb = CLIMB.matcher(line);
        while (climb.find()) {
          if (!file.getParent().resolve(climb.group(1)).normalize().startsWith(top)) {
            problems.add(where + "a path outside the repository: " + climb.group(1));
          }
        }
        String text = CODE_SPAN.matcher(line).replaceAll("``");
        Set<String> targets = new LinkedHashSet<>(); // a bare URL may also be a reference's target
        for (Pattern p : List.of(LINK, AUTOLINK, BARE_URL, REFERENCE)) {
          Matcher m = p.matcher(text);
          while (m.find()) {
            targets.add(m.groupCount() > 0 ? m.group(1) : m.group());
          }
        }
        for (String target : targets) {
          if (SCHEME.matcher(target).find()) {
            if (!(target.startsWith("http://") || target.startsWith("https://")) || !localExample(target)) {
              problems.add(where + "a link to another site (only local examples are allowed): " + target);
            }
            continue;
          }
          int hash = target.indexOf('#');
          String path = (hash < 0 ? target : target.substring(0, hash)).replaceAll("\\?.*", "");
          String fragment = hash < 0 ? "" : target.substring(hash + 1);
          if (path.startsWith("/")) {
            problems.add(where + "an absolute path (write it relative to the file): " + target);
            continue;
          }
          Path resolved = path.isEmpty() ? file : file.getParent().resolve(path).normalize();
          if (!resolved.startsWith(top)) {
            problems.add(where + "a link outside the repository: " + target);
          } else if (!Files.exists(resolved)) {
            problems.add(where + "a link to a file that does not exist: " + target);
          } else if (!fragment.isEmpty() && resolved.getFileName().toString().endsWith(".md")
              && !anchorCache.computeIfAbsent(resolved, f -> {
                try {
                  return anchors(f);
                } catch (IOException e) {
                  throw new IllegalStateException(e);
                }
              }).contains(fragment)) {
            problems.add(where + "no heading of " + top.relativize(resolved) + " has the anchor #" + fragment);
          }
        }
      }
    }
    return problems;
  }

  @Test
  void everyMarkdownFileLinksOnlyInsideTheRepository() throws IOException {
    assertThat(markdownFiles(REPOSITORY.toAbsolutePath().normalize()))
        .as("the Markdown files found").hasSizeGreaterThan(5);
    assertThat(problems(REPOSITORY)).as("links in the repository's Markdown files").isEmpty();
  }

  @Test
  void eachKindOfBadLinkIsFound(@TempDir Path repo) throws IOException {
    Path docs = Files.createDirectories(repo.resolve("docs"));
    Files.writeString(docs.resolve("b.md"), "# B\n\n## Known limits\n");
    Files.writeString(docs.resolve("pic.png"), "");
    Files.createDirectories(repo.resolve("target"));
    Files.writeString(repo.resolve("target").resolve("ignored.md"), "[gone](nowhere.md)\n");
    Files.writeString(repo.resolve("README.md"), String.join("\n",
        "# Title",
        "",
        "## Known limits",
        "",
        "Good: [b](docs/b.md#known-limits) ![p](docs/pic.png) [here](#known-limits) [dir](docs/)",
        "`http://127.0.0.1:7421/` <http://localhost:7421/metrics> https://partner.example/api",
        "```",
        "[in a code block](nowhere.md) ../../../etc",
        "```",
        "[missing](docs/c.md)",
        "[no such heading](docs/b.md#nothing)",
        "[out](../elsewhere/DESIGN.md)",
        "`../../shared/DESIGN.md` is the contract",
        "[abs](/work/shared/DESIGN.md)",
        "[site](https://github.com/some/project)",
        "see https://www.npmjs.com/package/x",
        "[ref]: https://example.com/docs",
        ""));
    List<String> found = problems(repo);
    assertThat(found).hasSize(9);
    assertThat(String.join("\n", found)).contains(
        "README.md:10: a link to a file that does not exist: docs/c.md",
        "README.md:11: no heading of docs/b.md has the anchor #nothing",
        "README.md:12: a path outside the repository: ../elsewhere/DESIGN.md",
        "README.md:12: a link outside the repository: ../elsewhere/DESIGN.md",
        "README.md:13: a path outside the repository: ../../shared/DESIGN.md",
        "README.md:14: an absolute path (write it relative to the file): /work/shared/DESIGN.md",
        "README.md:15: a link to another site (only local examples are allowed): https://github.com/some/project",
        "README.md:16: a link to another site (only local examples are allowed): https://www.npmjs.com/package/x",
        "README.md:17: a link to another site (only local examples are allowed): https://example.com/docs");
  }

  @Test
  void headingsGetGitHubsAnchors() {
    assertThat(slug("Failover and \"never granted twice\"")).isEqualTo("failover-and-never-granted-twice");
    assertThat(slug("`sluice limit set`")).isEqualTo("sluice-limit-set");
    assertThat(slug("Several nodes: targets, failover, degraded mode"))
        .isEqualTo("several-nodes-targets-failover-degraded-mode");
    assertThat(slug("sluice — the admin CLI")).isEqualTo("sluice--the-admin-cli");
  }
}
