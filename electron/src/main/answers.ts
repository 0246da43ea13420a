// The main process's answers to the page, computed by the native module. No Electron import,
// so the same functions run under plain node.

import type { AppInfo, TextStats } from '../shared/ipc.js'

/** The native module's exports (typed by crates/tachikoma-native/index.d.ts, beside its
 * loader), as main loads them from the .node file of its own mode. */
export type NativeModule = typeof import('../../../crates/tachikoma-native/index.js') & {
  /** The .node file main loaded. */
  binaryPath: string
}

/** Runtime versions shown next to the build info. */
export interface RuntimeVersions {
  electron: string
  node: string
  chrome: string
}

/** Build info of the native module plus where it was loaded from and the runtime versions. */
export function appInfo(native: NativeModule, versions: RuntimeVersions): AppInfo {
  const build = native.buildInfo()
  return {
    version: build.version,
    mode: build.mode,
    target: build.target,
    profile: build.profile,
    nativePath: native.binaryPath,
    versions,
  }
}

/** Rejects anything but a string: the page is untrusted input to the main process. */
function requireText(text: unknown): string {
  if (typeof text !== 'string') throw new TypeError(`expected a string, got ${typeof text}`)
  return text
}

/** SHA-256 hex digest of `text`, by tachikoma-core. */
export function hashText(native: NativeModule, text: unknown): string {
  return native.hashText(requireText(text))
}

/** Line, word, character and byte counts of `text`, by tachikoma-core. */
export function textStats(native: NativeModule, text: unknown): TextStats {
  return native.textStats(requireText(text))
}
