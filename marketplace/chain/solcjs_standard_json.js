// Runs solc-js on a standard-JSON input file and writes the output to a file.
// (solc-js's own CLI exits before a large stdout is flushed to a pipe, cutting it at 64 KiB.)
// usage: node solcjs_standard_json.js <path to node_modules/solc> <input.json> <output.json>
"use strict";
const fs = require("fs");
const solc = require(process.argv[2]);
const input = fs.readFileSync(process.argv[3], "utf8");
fs.writeFileSync(process.argv[4], solc.compile(input));
