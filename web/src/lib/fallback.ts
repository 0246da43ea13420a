// Browser-side stand-ins for the native functions, used when the page runs outside
// Electron (e.g. `npm run dev`). They follow tachikoma-core's definitions.

import type { TextStats } from './bridge'

/** SHA-256 of the UTF-8 bytes as lowercase hex, or null where WebCrypto is unavailable. */
export async function sha256Hex(text: string): Promise<string | null> {
  if (!globalThis.crypto?.subtle) return null
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, '0')).join('')
}

/** Counts as tachikoma-core's text_stats makes them (a final unterminated line counts). */
export function textStats(text: string): TextStats {
  const newlines = text.split('\n').length - 1
  const unterminated = text !== '' && !text.endsWith('\n') ? 1 : 0
  const words = text.split(/\s+/u).filter((word) => word !== '').length
  return {
    lines: newlines + unterminated,
    words,
    chars: Array.from(text).length,
    bytes: new TextEncoder().encode(text).length,
  }
}
