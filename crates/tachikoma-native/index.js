'use strict'
// Loads the Node-API module that `napi build --platform` wrote beside this file.
//
// napi names it tachikoma-native.<platform>-<arch>[-<abi>].node, where platform and arch
// are process.platform and process.arch, and abi is "gnu" or "musl" on Linux, "msvc" on
// Windows and absent on macOS. TACHIKOMA_NATIVE_PATH, when set, names the file to load
// instead (an absolute path, or one relative to the working directory).

const { existsSync } = require('node:fs')
const { join, resolve } = require('node:path')

function isMusl() {
  // glibcVersionRuntime is present in the process report only on glibc systems.
  const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null
  const header = report && typeof report === 'object' ? report.header : null
  return header ? !header.glibcVersionRuntime : false
}

function abiSuffix(platform) {
  if (platform === 'linux') return isMusl() ? '-musl' : '-gnu'
  if (platform === 'win32') return '-msvc'
  return ''
}

/** The file name napi gives the module for this platform, e.g. tachikoma-native.linux-x64-gnu.node. */
function binaryName(platform = process.platform, arch = process.arch) {
  return `tachikoma-native.${platform}-${arch}${abiSuffix(platform)}.node`
}

function binaryPath() {
  const override = process.env.TACHIKOMA_NATIVE_PATH
  return override ? resolve(override) : join(__dirname, binaryName())
}

const path = binaryPath()
if (!existsSync(path)) {
  throw new Error(
    `tachikoma-native: ${path} does not exist; build it with ` +
      '`npx napi build --platform --no-js --target <rust-target>` in crates/tachikoma-native',
  )
}

module.exports = require(path)
module.exports.binaryPath = path
