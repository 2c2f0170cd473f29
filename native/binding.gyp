# The project's own Node-API addon (poprelay.c): flock(2) and sd_notify(3). Built by
# `npm ci` (package.json's install script) with the node-gyp that npm carries.
{
  "targets": [
    {
      "target_name": "poprelay",
      "sources": ["poprelay.c"],
      # Node-API only: the .node file loads in any Node.js that has version 8 (12.22 and later).
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra"]
    }
  ]
}
