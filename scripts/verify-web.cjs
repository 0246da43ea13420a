#!/usr/bin/env node
'use strict'
// Checks that a page Vite built was built in the expected mode: web/vite.config.ts stamps
// <meta name="tachikoma-build-mode" content="<mode>"> into index.html, so a page of another
// mode (copied, restored or built into the wrong directory) is rejected by name.
//
// usage: node scripts/verify-web.cjs <path-to-index.html> --expect-mode M

const fs = require('node:fs')
const path = require('node:path')

const USAGE = 'usage: node scripts/verify-web.cjs <path-to-index.html> --expect-mode M'
const META = 'tachikoma-build-mode'

/** `file` as the message shows it: relative to the working directory (verify runs the checks
 * from the workspace root) when it is inside, so verify's one-line excerpt keeps the reason. */
function shown(file) {
  const relative = path.relative(process.cwd(), file)
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : file
}

function fail(message) {
  console.error(`verify-web: ${message}`)
  process.exit(1)
}

/** The mode index.html names in its meta tag, or null when it has none. */
function pageMode(html) {
  for (const match of html.matchAll(/<meta\b[^>]*>/gi)) {
    const tag = match[0]
    const name = tag.match(/\bname\s*=\s*["']([^"']*)["']/i)
    const content = tag.match(/\bcontent\s*=\s*["']([^"']*)["']/i)
    if (name && name[1] === META && content) return content[1]
  }
  return null
}

function main() {
  const args = process.argv.slice(2)
  if (args.length !== 3 || args[1] !== '--expect-mode' || !args[2]) fail(USAGE)
  const [file, , expected] = args
  const page = path.resolve(file)
  let html
  try {
    html = fs.readFileSync(page, 'utf8')
  } catch (error) {
    fail(`cannot read ${page}: ${error.message}`)
  }
  const mode = pageMode(html)
  if (mode === null) {
    fail(`${shown(page)} names no build mode (no <meta name="${META}">): it was not built by ` +
      `web/vite.config.ts; rebuild it with the svelte-build step in mode ${expected}`)
  }
  if (mode !== expected) {
    fail(`${shown(page)} was built for mode '${mode}', expected '${expected}'`)
  }
  console.log(`verify-web: ${page} was built for mode ${mode}`)
}

main()
