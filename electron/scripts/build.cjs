#!/usr/bin/env node
'use strict'
// Compiles the main process and preload with tsc into one mode's (and target's) directory,
// then writes build.json beside the compiled main: the mode, and the page and .node file
// main loads, relative to main's directory. Main reads it at start (src/main/paths.ts), so
// it loads the files of its own mode, decided here at build time.
//
// usage: node scripts/build.cjs --mode M --out-dir DIR --web-entry FILE --native-module FILE
//   (paths relative to electron/; build.toml's electron-build step passes them)

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const USAGE =
  'usage: node scripts/build.cjs --mode M --out-dir DIR --web-entry FILE --native-module FILE'
const FLAGS = {
  '--mode': 'mode',
  '--out-dir': 'outDir',
  '--web-entry': 'webEntry',
  '--native-module': 'nativeModule',
}

function fail(message) {
  console.error(`electron build: ${message}`)
  process.exit(1)
}

function parseArgs(argv) {
  const options = {}
  for (let i = 0; i < argv.length; i++) {
    const key = FLAGS[argv[i]]
    if (key === undefined) fail(`unknown argument ${argv[i]}\n${USAGE}`)
    if (i + 1 >= argv.length || argv[i + 1] === '') fail(`${argv[i]} needs a value\n${USAGE}`)
    options[key] = argv[++i]
  }
  for (const [flag, key] of Object.entries(FLAGS)) {
    if (options[key] === undefined) fail(`${flag} is required\n${USAGE}`)
  }
  return options
}

/** `file` relative to `from`, with forward slashes (build.json is the same on every OS). */
function relativeTo(from, file) {
  return path.relative(from, path.resolve(file)).split(path.sep).join('/')
}

function main() {
  const options = parseArgs(process.argv.slice(2))
  const outDir = path.resolve(options.outDir)
  const tsc = require.resolve('typescript/bin/tsc', { paths: [process.cwd()] })
  const compiled = spawnSync(process.execPath, [tsc, '-p', '.', '--outDir', outDir], {
    stdio: 'inherit',
  })
  if (compiled.error) fail(`could not run tsc: ${compiled.error.message}`)
  if (compiled.status !== 0) process.exit(compiled.status ?? 1)

  const mainDir = path.join(outDir, 'main')
  const config = {
    mode: options.mode,
    paths: {
      preload: '../preload/index.js',
      webEntry: relativeTo(mainDir, options.webEntry),
      nativeModule: relativeTo(mainDir, options.nativeModule),
    },
  }
  const file = path.join(mainDir, 'build.json')
  fs.writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`)
  console.log(`electron build: ${relativeTo('.', outDir)} (mode ${options.mode}); main loads ` +
    `${config.paths.webEntry} and ${config.paths.nativeModule}`)
}

main()
