/* test_cli_docs.c: docs/cli.md is what scripts/gen_cli_docs.sh makes from
 * the built ddpm's --help texts, byte for byte; the script puts every
 * command's --help in its own section; the README's links into docs/cli.md
 * name sections that exist; and the script fails cleanly on a bad binary.
 *
 * When --help texts change, the first test fails until the page is
 * regenerated: scripts/gen_cli_docs.sh build/ddpm > docs/cli.md */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "cliutil.h"
#include "testenv.h"

#define REGEN "scripts/gen_cli_docs.sh build/ddpm > docs/cli.md"

/* The source tree: $DDPM_TEST_DATA (CMake sets it) is SRC/tests/data. */
static const char *src_dir(void) {
    static char dir[4096];
    const char *d = getenv("DDPM_TEST_DATA");
    if (!d) fail_msg("DDPM_TEST_DATA is not set (run the tests through ctest)");
    snprintf(dir, sizeof dir, "%s", d);
    size_t n = strlen(dir);
    const char *tail = "/tests/data";
    if (n < strlen(tail) || strcmp(dir + n - strlen(tail), tail))
        fail_msg("DDPM_TEST_DATA '%s' does not end in %s", d, tail);
    dir[n - strlen(tail)] = '\0';
    return dir;
}

typedef struct {
    int status;
    char *out, *err; /* malloc'ed, NUL-terminated */
    size_t nout;
} script_result;

/* Runs scripts/gen_cli_docs.sh BIN through bash. */
static void run_script(script_result *r, const char *bin) {
    char dir[256], cmd[16384], path[512];
    cli_tmpdir(dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "bash '%s/scripts/gen_cli_docs.sh' '%s' </dev/null >'%s/out' 2>'%s/err'", src_dir(),
             bin, dir, dir);
    int st = system(cmd);
    if (st == -1) fail_msg("cannot run %s", cmd);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    size_t nerr;
    snprintf(path, sizeof path, "%s/out", dir);
    r->out = cli_slurp(path, &r->nout);
    snprintf(path, sizeof path, "%s/err", dir);
    r->err = cli_slurp(path, &nerr);
    cli_rmtree(dir);
}

static void script_free(script_result *r) {
    free(r->out);
    free(r->err);
}

/* The page the script makes from $DDPM_BIN (the test fails if it fails). */
static void generate(script_result *r) {
    const char *bin = getenv("DDPM_BIN");
    if (!bin) fail_msg("DDPM_BIN is not set (run the tests through ctest)");
    run_script(r, bin);
    if (r->status != 0 || r->err[0])
        fail_msg("scripts/gen_cli_docs.sh %s exited %d; stderr:\n%s", bin, r->status, r->err);
}

/* The 1-based line number of the first difference and copies of both lines. */
static int first_diff(const char *a, const char *b, char *la, char *lb, size_t cap) {
    int line = 1;
    const char *sa = a, *sb = b; /* starts of the current lines */
    while (*a && *a == *b) {
        if (*a == '\n') line++, sa = a + 1, sb = b + 1;
        a++, b++;
    }
    snprintf(la, cap, "%.*s", (int)strcspn(sa, "\n"), sa);
    snprintf(lb, cap, "%.*s", (int)strcspn(sb, "\n"), sb);
    return line;
}

static void cli_md_matches_binary(void **state) {
    (void)state;
    script_result r;
    generate(&r);
    char path[4200];
    snprintf(path, sizeof path, "%s/docs/cli.md", src_dir());
    size_t n;
    char *page = cli_slurp(path, &n);
    if (n != r.nout || memcmp(page, r.out, n)) {
        char la[300], lb[300];
        int line = first_diff(page, r.out, la, lb, sizeof la);
        fail_msg("docs/cli.md is out of date with the built ddpm's --help texts (first difference at line %d:\n"
                 "  docs/cli.md: %s\n  generated:   %s)\nregenerate it: " REGEN,
                 line, la, lb);
    }
    free(page);
    script_free(&r);
}

/* The command names of `ddpm --help`'s "commands:" block, space-separated. */
static void command_names(char *names, size_t cap) {
    static cli_result top;
    if (cli_run(&top, "--help") != 0) fail_msg("'ddpm --help' exited %d", top.status);
    const char *p = strstr(top.out, "\ncommands:\n");
    assert_non_null(p);
    p += strlen("\ncommands:\n");
    names[0] = '\0';
    while (p[0] == ' ' && p[1] == ' ' && p[2] != ' ') {
        size_t len = strcspn(p + 2, " \n");
        snprintf(names + strlen(names), cap - strlen(names), "%.*s ", (int)len, p + 2);
        p = strchr(p, '\n');
        if (!p) break;
        p++;
    }
    if (!names[0]) fail_msg("'ddpm --help' lists no commands:\n%s", top.out);
}

static void every_command_has_its_help(void **state) {
    (void)state;
    script_result r;
    generate(&r);
    char names[4096], name[64];
    command_names(names, sizeof names);
    static cli_result help;
    static char want[70000];
    int count = 0;
    for (const char *p = names; sscanf(p, "%63s", name) == 1; p = strchr(p, ' ') + 1, count++) {
        if (cli_run(&help, "%s --help", name) != 0) fail_msg("'ddpm %s --help' exited %d", name, help.status);
        size_t len = strlen(help.out);
        while (len && help.out[len - 1] == '\n') len--;
        snprintf(want, sizeof want, "\n## ddpm %s\n\n```text\n%.*s\n```\n", name, (int)len, help.out);
        if (!strstr(r.out, want)) fail_msg("the generated page lacks 'ddpm %s --help' in its own section", name);
    }
    assert_true(count >= 1);
    script_free(&r);
}

/* Every README link docs/cli.md#ddpm-NAME names a section of docs/cli.md. */
static void readme_links_exist(void **state) {
    (void)state;
    char path[4200];
    size_t n;
    snprintf(path, sizeof path, "%s/README.md", src_dir());
    char *readme = cli_slurp(path, &n);
    snprintf(path, sizeof path, "%s/docs/cli.md", src_dir());
    char *page = cli_slurp(path, &n);
    int links = 0;
    for (const char *p = readme; (p = strstr(p, "docs/cli.md#ddpm-")); links++) {
        p += strlen("docs/cli.md#ddpm-");
        char heading[128];
        snprintf(heading, sizeof heading, "\n## ddpm %.*s\n", (int)strcspn(p, ")\"' \n"), p);
        if (!strstr(page, heading))
            fail_msg("README.md links to docs/cli.md#ddpm-%.*s, which has no section", (int)strcspn(p, ")"), p);
    }
    assert_true(links >= 1);
    free(readme);
    free(page);
}

static void script_fails_cleanly(void **state) {
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/README.md", src_dir()); /* not executable */
    const char *bad[] = {path, "/nonexistent/ddpm", "/bin/false"};
    for (int i = 0; i < 3; i++) {
        script_result r;
        run_script(&r, bad[i]);
        if (r.status != 1 || r.nout != 0 || cli_lines(r.err) != 1 || !strstr(r.err, "gen_cli_docs.sh: "))
            fail_msg("gen_cli_docs.sh %s: exit %d, %zu bytes on stdout, stderr:\n%s", bad[i], r.status, r.nout,
                     r.err);
        script_free(&r);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cli_md_matches_binary),
        cmocka_unit_test(every_command_has_its_help),
        cmocka_unit_test(readme_links_exist),
        cmocka_unit_test(script_fails_cleanly),
    };
    return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
