//! wordcount: a buyer's own workload in Rust, built to WebAssembly (WASI preview 1).
//!
//! Counts lines, words and bytes of each input file named in the arguments (files the buyer
//! uploaded, mapped read-only under /input), writes one line per file to /work/out/counts.tsv
//! (the run's output file) and prints the totals on stdout. No argument: it counts stdin.
//! No clock, no randomness: a deterministic run reproduces it byte for byte.
//!
//! Build (Debian: apt-get install rustc libstd-rust-dev-wasm32):
//!   rustc --edition 2021 --target wasm32-wasi -C opt-level=2 -C strip=symbols \
//!       --remap-path-prefix="$PWD"=. -o wordcount-rust.wasm wordcount.rs

use std::env;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::process::exit;

#[derive(Default, Clone, Copy)]
struct Counts {
    lines: u64,
    words: u64,
    bytes: u64,
}

fn count<R: Read>(reader: R) -> io::Result<Counts> {
    let mut c = Counts::default();
    let mut in_word = false;
    for byte in BufReader::new(reader).bytes() {
        let ch = byte?;
        c.bytes += 1;
        if ch == b'\n' {
            c.lines += 1;
        }
        let space = matches!(ch, b' ' | b'\n' | b'\t' | b'\r' | 0x0b | 0x0c);
        if !space && !in_word {
            c.words += 1;
        }
        in_word = !space;
    }
    Ok(c)
}

fn run() -> Result<Counts, String> {
    let names: Vec<String> = env::args().skip(1).collect();
    let out_path = "/work/out/counts.tsv";
    let mut out = File::create(out_path).map_err(|e| format!("{out_path}: {e}"))?;
    let mut total = Counts::default();
    let mut rows = String::new();
    if names.is_empty() {
        total = count(io::stdin().lock()).map_err(|e| format!("stdin: {e}"))?;
        rows.push_str(&format!("-\t{}\t{}\t{}\n", total.lines, total.words, total.bytes));
    }
    for name in &names {
        let path = format!("/input/{name}");
        let file = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        let c = count(file).map_err(|e| format!("{path}: {e}"))?;
        rows.push_str(&format!("{name}\t{}\t{}\t{}\n", c.lines, c.words, c.bytes));
        total.lines += c.lines;
        total.words += c.words;
        total.bytes += c.bytes;
    }
    out.write_all(rows.as_bytes()).map_err(|e| format!("{out_path}: {e}"))?;
    Ok(total)
}

fn main() {
    match run() {
        Ok(t) => println!("total {} {} {}", t.lines, t.words, t.bytes),
        Err(message) => {
            eprintln!("{message}");
            exit(1);
        }
    }
}
