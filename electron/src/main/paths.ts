// Where the compiled main process finds the files it loads. The build (scripts/build.cjs)
// writes them into build.json beside the compiled main, relative to its directory
// (electron/dist/<triple>/<mode>/main), together with the mode they belong to: main loads the
// page and the native module of its own mode and target, fixed at build time, never guessed
// at run time. Kept apart from index.ts, with no Electron import, so that
// scripts/verify-electron.cjs can require this module in plain node and check each exists.

import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

/** The file the build writes beside the compiled main. */
export const BUILD_CONFIG = 'build.json'

/** What build.json holds. */
export interface BuildConfig {
  /** The build mode this main was compiled for (development, production, test). */
  mode: string
  /** Each file main loads, relative to the directory of main/index.js. */
  paths: {
    /** The compiled preload script. */
    preload: string
    /** The page Vite built for the same mode (web/dist/<mode>/index.html). */
    webEntry: string
    /** The .node file napi built for the same mode and target. */
    nativeModule: string
  }
}

/** build.json of the main compiled into `mainDir`; throws naming the file and the fix. */
export function readBuildConfig(mainDir: string): BuildConfig {
  const file = join(mainDir, BUILD_CONFIG)
  let config: Partial<BuildConfig>
  try {
    config = JSON.parse(readFileSync(file, 'utf8')) as Partial<BuildConfig>
  } catch (error) {
    throw new Error(`tachikoma: cannot read ${file} (${String(error)}); build electron/ with ` +
      'scripts/build.cjs (the electron-build step), not plain tsc')
  }
  if (typeof config.mode !== 'string' || typeof config.paths !== 'object' || config.paths === null) {
    throw new Error(`tachikoma: ${file} has no mode or paths; rebuild with the electron-build step`)
  }
  return config as BuildConfig
}

const CONFIG = readBuildConfig(__dirname)

/** The mode this main was built for. */
export const BUILD_MODE: string = CONFIG.mode

/** Each file main loads, relative to the directory of dist/<triple>/<mode>/main/index.js. */
export const RELATIVE_PATHS: BuildConfig['paths'] = CONFIG.paths

export type PathName = keyof BuildConfig['paths']

/** The absolute path of `name`, resolved against `mainDir` (the caller's __dirname). */
export function resolvePath(mainDir: string, name: PathName): string {
  return resolve(mainDir, RELATIVE_PATHS[name])
}
