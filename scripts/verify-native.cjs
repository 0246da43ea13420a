#!/usr/bin/env node
'use strict'
// Loads a built tachikoma-native .node file, calls every function it exports and checks the
// answers against known values. Prints each check; exits 1 naming every failure on one
// line (the line `buildlib verify` shows).
//
// usage: node scripts/verify-native.cjs <path-to-.node>
//          [--expect-version V]   default: [workspace.package] version in the root Cargo.toml
//          [--expect-mode M]      development | production | test (TACHIKOMA_BUILD_MODE at build)
//          [--expect-target T]    the Rust target triple it was built for
//          [--expect-profile P]   debug | release

const fs = require('node:fs')
const path = require('node:path')

const USAGE =
  'usage: node scripts/verify-native.cjs <path-to-.node> [--expect-version V] ' +
  '[--expect-mode M] [--expect-target T] [--expect-profile P]'

/** `file` as the message shows it: relative to the working directory (verify runs the checks
 * from the workspace root) when it is inside, so verify's one-line excerpt keeps the reason. */
function shown(file) {
  const relative = path.relative(process.cwd(), file)
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : file
}

function fail(message) {
  console.error(`verify-native: ${message}`)
  process.exit(1)
}

function parseArgs(argv) {
  const options = { file: null, version: null, mode: null, target: null, profile: null }
  const flags = {
    '--expect-version': 'version',
    '--expect-mode': 'mode',
    '--expect-target': 'target',
    '--expect-profile': 'profile',
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg in flags) {
      if (i + 1 >= argv.length) fail(`${arg} needs a value\n${USAGE}`)
      options[flags[arg]] = argv[++i]
    } else if (arg.startsWith('-')) {
      fail(`unknown option ${arg}\n${USAGE}`)
    } else if (options.file === null) {
      options.file = arg
    } else {
      fail(`unexpected argument ${arg}\n${USAGE}`)
    }
  }
  if (options.file === null) fail(`no module path given\n${USAGE}`)
  return options
}

/** The [workspace.package] version from the Cargo.toml at the repository root. */
function workspaceVersion() {
  const manifest = path.join(__dirname, '..', 'Cargo.toml')
  let text
  try {
    text = fs.readFileSync(manifest, 'utf8')
  } catch (error) {
    fail(`cannot read ${manifest} for the expected version (${error.message}); pass --expect-version`)
  }
  const section = text.split(/^\[workspace\.package\]\s*$/m)[1]
  const match = section && section.split(/^\[/m)[0].match(/^version\s*=\s*"([^"]+)"/m)
  if (!match) fail(`${manifest} has no [workspace.package] version; pass --expect-version`)
  return match[1]
}

// Known answers: SHA-256 test vectors (FIPS 180-2 "abc", the empty string, and the two
// UTF-8 bytes of "é", from `printf 'é' | sha256sum`).
const HASHES = {
  '': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  abc: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  'é': '4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c',
}
const STATS_INPUT = 'hello world\nça va\n'
const STATS = { lines: 2, words: 4, chars: 18, bytes: 19 }
const FUNCTIONS = ['version', 'buildInfo', 'hashText', 'textStats']

function main() {
  const options = parseArgs(process.argv.slice(2))
  const file = path.resolve(options.file)
  if (!fs.existsSync(file)) fail(`${file} does not exist (build it with the native-module step)`)
  // require() would run any other file as JavaScript; only a .node file is loaded as a module.
  if (path.extname(file) !== '.node') fail(`${file} is not a .node file`)
  let native
  try {
    native = require(file)
  } catch (error) {
    fail(`${file} does not load in node ${process.version}: ${error.message}`)
  }

  const problems = []
  const check = (what, ok, detail) => {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${ok ? '' : `: ${detail}`}`)
    if (!ok) problems.push(`${what}: ${detail}`)
  }
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b)

  for (const name of FUNCTIONS) {
    check(`exports ${name}()`, typeof native[name] === 'function', `got ${typeof native[name]}`)
  }
  if (problems.length) fail(`${shown(file)} is missing exports: ${problems.join('; ')}`)

  const expectedVersion = options.version ?? workspaceVersion()
  const version = native.version()
  check(`version() is ${expectedVersion}`, version === expectedVersion, `got ${JSON.stringify(version)}`)

  for (const [text, digest] of Object.entries(HASHES)) {
    const got = native.hashText(text)
    check(`hashText(${JSON.stringify(text)}) is ${digest.slice(0, 12)}…`, got === digest, `got ${got}`)
  }

  const stats = native.textStats(STATS_INPUT)
  check(`textStats(${JSON.stringify(STATS_INPUT)}) is ${JSON.stringify(STATS)}`, same(stats, STATS), `got ${JSON.stringify(stats)}`)

  const info = native.buildInfo()
  check('buildInfo().version matches version()', info?.version === version, `got ${JSON.stringify(info)}`)
  for (const key of ['mode', 'target', 'profile']) {
    const expected = options[key]
    if (expected === null) {
      check(`buildInfo().${key} is set (${info?.[key]})`, typeof info?.[key] === 'string' && info[key] !== '', `got ${JSON.stringify(info)}`)
    } else {
      check(`buildInfo().${key} is ${expected}`, info?.[key] === expected, `got ${JSON.stringify(info?.[key])}`)
    }
  }

  if (problems.length) {
    fail(`${shown(file)} failed ${problems.length} check(s): ${problems.join('; ')}`)
  }
  console.log(`verify-native: ${file} passed all checks`)
}

main()
