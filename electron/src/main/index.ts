// The Electron main process: loads the native module, opens one window on the page Vite
// built, and answers the page's bridge calls over IPC.

import { BrowserWindow, app, ipcMain } from 'electron'

import { CHANNELS } from '../shared/ipc.js'
import { type NativeModule, appInfo, hashText, textStats } from './answers.js'
import { resolvePath } from './paths.js'

// A computed path, so the loader is required at run time from the repository layout
// rather than bundled; it throws a message naming the missing .node file.
const native = require(resolvePath(__dirname, 'nativeLoader')) as NativeModule

function answerIpc(): void {
  ipcMain.handle(CHANNELS.info, () =>
    appInfo(native, {
      electron: process.versions.electron,
      node: process.versions.node,
      chrome: process.versions.chrome,
    }),
  )
  ipcMain.handle(CHANNELS.hashText, (_event, text: unknown) => hashText(native, text))
  ipcMain.handle(CHANNELS.textStats, (_event, text: unknown) => textStats(native, text))
}

function createWindow(): BrowserWindow {
  const window = new BrowserWindow({
    width: 960,
    height: 720,
    title: 'Tachikoma',
    webPreferences: {
      preload: resolvePath(__dirname, 'preload'),
      contextIsolation: true,
      nodeIntegration: false,
      sandbox: true,
    },
  })
  void window.loadFile(resolvePath(__dirname, 'webEntry'))
  return window
}

answerIpc()

app.whenReady().then(
  () => {
    createWindow()
    // macOS: re-open a window when the dock icon is clicked and none is open.
    app.on('activate', () => {
      if (BrowserWindow.getAllWindows().length === 0) createWindow()
    })
  },
  (error: unknown) => {
    console.error('tachikoma: Electron failed to start:', error)
    app.exit(1)
  },
)

app.on('window-all-closed', () => {
  if (process.platform !== 'darwin') app.quit()
})
