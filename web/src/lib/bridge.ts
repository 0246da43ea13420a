// The contract between this page and the Electron preload (electron/src/preload/index.ts),
// which exposes it as `window.tachikoma` through contextBridge. In a plain browser it is
// absent and the page falls back to what it can compute itself.

/** How the app was built, as reported by the native module and Electron. */
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

/** What the preload exposes; every call is answered by the main process over IPC. */
export interface TachikomaBridge {
  info(): Promise<AppInfo>
  hashText(text: string): Promise<string>
  textStats(text: string): Promise<TextStats>
}

declare global {
  interface Window {
    tachikoma?: TachikomaBridge
  }
}

/** The bridge when running inside the Electron app, else null. */
export function bridge(): TachikomaBridge | null {
  return typeof window !== 'undefined' && window.tachikoma ? window.tachikoma : null
}
