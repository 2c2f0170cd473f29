import { statfs } from "node:fs/promises";

/**
 * File systems whose every write goes through this kernel, so that inotify reports it: an
 * append to a log there always wakes a directory watch. On network and FUSE file systems (NFS,
 * CIFS, sshfs...) a watch can be set up but never hears of writes made elsewhere; those, and any
 * file system not listed, keep the file reader's frequent stat timer. Values from linux/magic.h
 * (ZFS from OpenZFS).
 */
const LOCAL_FILE_SYSTEMS = new Set([
  0xef53, // ext2, ext3, ext4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x01021994, // tmpfs
  0x858458f6, // ramfs
  0xf2f52010, // f2fs
  0x2fc12fc1, // zfs
  0xca451a4e, // bcachefs
  0x52654973, // reiserfs
  0x3153464a, // jfs
  0x794c7630, // overlayfs (a container's own writes go through it)
]);

/** Whether a watch on `directory` hears of every write to the files in it. */
export async function watchSeesEveryWrite(directory: string): Promise<boolean> {
  try {
    return LOCAL_FILE_SYSTEMS.has((await statfs(directory)).type);
  } catch {
    return false;
  }
}
