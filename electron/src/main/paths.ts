// Where the compiled main process finds the files it loads, relative to its own directory
// (electron/dist/main). Kept apart from index.ts, with no Electron import, so that
// scripts/verify-electron.cjs can require this module in plain node and check each exists.

import { resolve } from 'node:path'

/** Each file main loads, relative to the directory of dist/main/index.js. */
export const RELATIVE_PATHS = {
  /** The compiled preload script. */
  preload: '../preload/index.js',
  /** The page Vite builds (web/dist/index.html). */
  webEntry: '../../../web/dist/index.html',
  /** The loader that picks the platform's .node file (crates/tachikoma-native/index.js). */
  nativeLoader: '../../../crates/tachikoma-native/index.js',
} as const

export type PathName = keyof typeof RELATIVE_PATHS

/** The absolute path of `name`, resolved against `mainDir` (the caller's __dirname). */
export function resolvePath(mainDir: string, name: PathName): string {
  return resolve(mainDir, RELATIVE_PATHS[name])
}
