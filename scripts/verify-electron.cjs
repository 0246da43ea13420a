#!/usr/bin/env node
'use strict'
// Checks that a compiled Electron main process can find everything it loads: the preload,
// the page Vite built (and the assets that page references) and the native module's loader.
// The paths come from dist/main/paths.js, the module main itself resolves them with, so this
// checks exactly what main would open. Reports every missing file at once; exits 1 if any.
//
// usage: node scripts/verify-electron.cjs <path-to-electron/dist/main/index.js>

const fs = require('node:fs')
const path = require('node:path')

// Which build step writes each file main loads, for the message when one is missing.
const MADE_BY = {
  preload: 'the electron build (npm run build in electron/)',
  webEntry: 'the web build (npm run build in web/)',
  nativeLoader: 'the repository (crates/tachikoma-native/index.js is a source file)',
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
  const args = process.argv.slice(2)
  if (args.length !== 1) fail('usage: node scripts/verify-electron.cjs <path-to-electron/dist/main/index.js>')
  const mainFile = path.resolve(args[0])
  const mainDir = path.dirname(mainFile)
  if (!isFile(mainFile)) fail(`${mainFile} does not exist (build it with the electron build step)`)

  const pathsFile = path.join(mainDir, 'paths.js')
  if (!isFile(pathsFile)) fail(`${pathsFile} does not exist: main's path table was not compiled`)
  const mainSource = fs.readFileSync(mainFile, 'utf8')
  if (!/require\(["']\.\/paths(\.js)?["']\)/.test(mainSource)) {
    fail(`${mainFile} does not require ./paths.js, so its paths cannot be checked`)
  }
  let relativePaths
  try {
    relativePaths = require(pathsFile).RELATIVE_PATHS
  } catch (error) {
    fail(`${pathsFile} does not load in node: ${error.message}`)
  }
  if (!relativePaths || typeof relativePaths !== 'object') fail(`${pathsFile} exports no RELATIVE_PATHS table`)

  const problems = []
  const report = (ok, what, problem) => {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`)
    if (!ok) problems.push(problem)
  }
  for (const name of ['preload', 'webEntry', 'nativeLoader']) {
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
    const assets = pageAssets(fs.readFileSync(webEntry, 'utf8'))
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

  if (problems.length) fail(`${mainFile}: ${problems.length} problem(s):\n  ${problems.join('\n  ')}`)
  console.log(`verify-electron: ${mainFile} finds everything it loads`)
}

main()
