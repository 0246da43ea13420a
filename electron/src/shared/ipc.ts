// The IPC contract between the preload (which exposes it to the page as `window.tachikoma`)
// and the main process (which answers it). The page imports these types from here
// (web/src/lib/bridge.ts), so both sides check against one contract.

/** The channel each bridge call travels on; main handles them with ipcMain.handle. */
export const CHANNELS = {
  info: 'tachikoma:info',
  hashText: 'tachikoma:hash-text',
  textStats: 'tachikoma:text-stats',
} as const

export type Channel = (typeof CHANNELS)[keyof typeof CHANNELS]

/** How the app was built: the native module's build info plus the runtime versions. */
export interface AppInfo {
  version: string
  mode: string
  target: string
  profile: string
  /** Absolute path of the .node file the main process loaded. */
  nativePath: string
  versions: { electron: string; node: string; chrome: string }
}

/** Line, word, character and byte counts of a text. */
export interface TextStats {
  lines: number
  words: number
  chars: number
  bytes: number
}

/** What the preload exposes on `window.tachikoma`. */
export interface TachikomaBridge {
  info(): Promise<AppInfo>
  hashText(text: string): Promise<string>
  textStats(text: string): Promise<TextStats>
}
