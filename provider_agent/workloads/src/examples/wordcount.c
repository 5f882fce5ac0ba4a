/* wordcount: a buyer's own workload in C, built to WebAssembly (WASI preview 1).
 *
 * Counts lines, words and bytes of each input file named in argv (files the buyer uploaded,
 * mapped read-only under /input), writes one line per file to /work/out/counts.tsv (the run's
 * output file) and prints the totals on stdout. No argument: it counts stdin. It uses no clock
 * and no randomness, so a deterministic run reproduces it byte for byte.
 *
 * Build (Debian: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32):
 *   clang --target=wasm32-wasi -O2 -s -o wordcount-c.wasm wordcount.c
 */
#include <stdio.h>
#include <string.h>

struct counts { unsigned long long lines, words, bytes; };

static struct counts count(FILE *f) {
    struct counts c = {0, 0, 0};
    int in_word = 0, ch;
    while ((ch = getc(f)) != EOF) {
        c.bytes++;
        if (ch == '\n') c.lines++;
        int space = ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
        if (!space && !in_word) c.words++;
        in_word = !space;
    }
    return c;
}

int main(int argc, char **argv) {
    FILE *out = fopen("/work/out/counts.tsv", "w");
    if (!out) { perror("/work/out/counts.tsv"); return 1; }
    struct counts total = {0, 0, 0};
    if (argc < 2) {
        total = count(stdin);
        fprintf(out, "-\t%llu\t%llu\t%llu\n", total.lines, total.words, total.bytes);
    }
    for (int i = 1; i < argc; i++) {
        char path[4096];
        snprintf(path, sizeof path, "/input/%s", argv[i]);
        FILE *f = fopen(path, "r");
        if (!f) { perror(path); return 1; }
        struct counts c = count(f);
        fclose(f);
        fprintf(out, "%s\t%llu\t%llu\t%llu\n", argv[i], c.lines, c.words, c.bytes);
        total.lines += c.lines; total.words += c.words; total.bytes += c.bytes;
    }
    if (fclose(out) != 0) { perror("/work/out/counts.tsv"); return 1; }
    printf("total %llu %llu %llu\n", total.lines, total.words, total.bytes);
    return 0;
}
