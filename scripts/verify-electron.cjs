#!/usr/bin/env node
'use strict'
// Checks that a compiled Electron main process can find everything it loads: the preload,
// the page Vite built (and the assets that page references) and the native module. The paths
// come from main/paths.js, the module main itself resolves them with (it reads build.json,
// written at build time), so this checks exactly what main would open. With --expect-mode,
// main must have been built for that mode and the page it loads too (the page names its mode
// in a meta tag): an artifact of another mode is rejected by name. Reports every problem at
// once; exits 1 if any.
//
// usage: node scripts/verify-electron.cjs <electron/dist/<triple>/<mode>/main/index.js>
//          [--expect-mode M]

const fs = require('node:fs')
const path = require('node:path')

// Which build step writes each file main loads, for the message when one is missing.
const MADE_BY = {
  preload: 'the electron build (npm run build in electron/)',
  webEntry: 'the web build (npm run build in web/)',
  nativeModule: 'the native-module step (napi build in crates/tachikoma-native/)',
}
const PATH_NAMES = ['preload', 'webEntry', 'nativeModule']
const MODE_META = 'tachikoma-build-mode'
const USAGE =
  'usage: node scripts/verify-electron.cjs <path-to-electron/dist/<triple>/<mode>/main/index.js> ' +
  '[--expect-mode M]'

/** `file` as the message shows it: relative to the working directory (verify runs the checks
 * from the workspace root) when it is inside, so verify's one-line excerpt keeps the reason. */
function shown(file) {
  const relative = path.relative(process.cwd(), file)
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : file
}

function fail(message) {
  console.error(`verify-electron: ${message}`)
  process.exit(1)
}

function isFile(file) {
  try {
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/** The mode a page names in its <meta name="tachikoma-build-mode">, or null. */
function pageMode(html) {
  for (const match of html.matchAll(/<meta\b[^>]*>/gi)) {
    const name = match[0].match(/\bname\s*=\s*["']([^"']*)["']/i)
    const content = match[0].match(/\bcontent\s*=\s*["']([^"']*)["']/i)
    if (name && name[1] === MODE_META && content) return content[1]
  }
  return null
}

function parseArgs(argv) {
  let file = null
  let mode = null
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--expect-mode') {
      if (i + 1 >= argv.length || !argv[i + 1]) fail(`--expect-mode needs a value\n${USAGE}`)
      mode = argv[++i]
    } else if (argv[i].startsWith('-') || file !== null) {
      fail(`unexpected argument ${argv[i]}\n${USAGE}`)
    } else {
      file = argv[i]
    }
  }
  if (file === null) fail(USAGE)
  return { file, mode }
}

/** Relative URLs of the scripts and stylesheets an HTML page loads. */
function pageAssets(html) {
  const urls = []
  for (const match of html.matchAll(/<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']/gi)) {
    const url = match[1]
    if (!/^[a-z][a-z0-9+.-]*:|^\/\//i.test(url) && !url.startsWith('#')) urls.push(url)
  }
  return urls
}

function main() {
  const options = parseArgs(process.argv.slice(2))
  const mainFile = path.resolve(options.file)
  const mainDir = path.dirname(mainFile)
  if (!isFile(mainFile)) fail(`${mainFile} does not exist (build it with the electron build step)`)

  const pathsFile = path.join(mainDir, 'paths.js')
  if (!isFile(pathsFile)) fail(`${pathsFile} does not exist: main's path table was not compiled`)
  const mainSource = fs.readFileSync(mainFile, 'utf8')
  if (!/require\(["']\.\/paths(\.js)?["']\)/.test(mainSource)) {
    fail(`${mainFile} does not require ./paths.js, so its paths cannot be checked`)
  }
  let relativePaths
  let builtMode
  try {
    const table = require(pathsFile)
    relativePaths = table.RELATIVE_PATHS
    builtMode = table.BUILD_MODE
  } catch (error) {
    fail(`${pathsFile} does not load in node: ${error.message}`)
  }
  if (!relativePaths || typeof relativePaths !== 'object') fail(`${pathsFile} exports no RELATIVE_PATHS table`)

  const problems = []
  const report = (ok, what, problem) => {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`)
    if (!ok) problems.push(problem)
  }
  if (options.mode !== null) {
    report(builtMode === options.mode, `main was built for mode ${builtMode}`,
      `${shown(mainFile)} was built for mode '${builtMode}', expected '${options.mode}'`)
  }
  for (const name of PATH_NAMES) {
    if (typeof relativePaths[name] !== 'string') {
      report(false, `${name}: not in the path table`, `${pathsFile} has no '${name}' path`)
    }
  }
  for (const [name, relative] of Object.entries(relativePaths)) {
    const file = path.resolve(mainDir, relative)
    const made = MADE_BY[name] ? `; it is made by ${MADE_BY[name]}` : ''
    report(isFile(file), `${name}: ${file}`, `${name} ${file} is missing${made}`)
  }

  // A sandboxed preload can require only 'electron' (and a few node built-ins); a relative
  // require would throw when the window opens.
  const preload = path.resolve(mainDir, relativePaths.preload ?? '')
  if (isFile(preload)) {
    const local = fs.readFileSync(preload, 'utf8').match(/require\(["']\.{1,2}\/[^"']*["']\)/)
    report(!local, 'preload requires no local files (it runs sandboxed)', `${preload} has ${local?.[0]}, which a sandboxed preload cannot load`)
  }

  // The page is useless without its scripts and styles; check the ones it names exist.
  const webEntry = path.resolve(mainDir, relativePaths.webEntry ?? '')
  if (isFile(webEntry)) {
    const html = fs.readFileSync(webEntry, 'utf8')
    const mode = pageMode(html)
    if (typeof builtMode === 'string') {
      report(mode === builtMode, `${path.basename(webEntry)} was built for mode ${mode}`,
        `${shown(webEntry)} was built for mode '${mode}', but main (mode '${builtMode}') loads it`)
    }
    const assets = pageAssets(html)
    report(assets.length > 0, `${path.basename(webEntry)} loads ${assets.length} asset(s)`, `${webEntry} loads no script or stylesheet`)
    for (const url of assets) {
      if (url.startsWith('/')) {
        report(false, `asset ${url}`, `${webEntry} loads ${url} by an absolute path, which breaks under file://; build with base './'`)
        continue
      }
      const file = path.resolve(path.dirname(webEntry), decodeURI(url.split(/[?#]/)[0]))
      report(isFile(file), `asset ${url}`, `${webEntry} loads ${url} but ${file} is missing`)
    }
  }

  if (problems.length) fail(`${shown(mainFile)}: ${problems.length} problem(s): ${problems.join('; ')}`)
  console.log(`verify-electron: ${mainFile} finds everything it loads`)
}

main()
