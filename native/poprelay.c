/*
 * poprelay's native part: the two system calls Node.js does not offer, through Node-API only
 * (node_api.h), so one build loads in every Node.js from 18 on, whatever its V8 ABI.
 *
 *   flock(fd, operation) -> Promise<void>   flock(2); LOCK_EX waits on libuv's thread pool
 *   notify(socket, message) -> undefined    one sd_notify(3) datagram to $NOTIFY_SOCKET
 *
 * NAPI_VERSION (binding.gyp) is 8, which Node.js 12.22, 14.17, 16 and later all provide.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <node_api.h>

/* Throws (or returns) an Error like Node's own: message "syscall: text", .code "EAGAIN". */
static napi_value errno_error(napi_env env, const char *syscall, int error) {
  char message[256];
  const char *code = NULL;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  code = strerrorname_np(error);
#endif
  napi_value code_value = NULL, message_value, result, number;
  snprintf(message, sizeof message, "%s: %s", syscall, strerror(error));
  if (code != NULL) napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_value);
  napi_create_error(env, code_value, message_value, &result);
  napi_create_int32(env, -error, &number);
  napi_set_named_property(env, result, "errno", number);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &number);
  napi_set_named_property(env, result, "syscall", number);
  return result;
}

static napi_value throw_type_error(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

/* ---- flock ---------------------------------------------------------------------------- */

struct flock_work {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int operation;
  int error;
};

/* On a thread-pool thread: may block until the holder lets go. */
static void flock_execute(napi_env env, void *data) {
  (void)env;
  struct flock_work *w = data;
  int rc;
  do rc = flock(w->fd, w->operation);
  while (rc == -1 && errno == EINTR);
  w->error = rc == -1 ? errno : 0;
}

static void flock_complete(napi_env env, napi_status status, void *data) {
  struct flock_work *w = data;
  napi_value value;
  if (status != napi_ok) {
    napi_create_string_utf8(env, "flock: cancelled", NAPI_AUTO_LENGTH, &value);
    napi_create_error(env, NULL, value, &value);
    napi_reject_deferred(env, w->deferred, value);
  } else if (w->error != 0) {
    napi_reject_deferred(env, w->deferred, errno_error(env, "flock", w->error));
  } else {
    napi_get_undefined(env, &value);
    napi_resolve_deferred(env, w->deferred, value);
  }
  napi_delete_async_work(env, w->work);
  free(w);
}

static napi_value js_flock(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], promise, name;
  int32_t fd, operation;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &operation) != napi_ok)
    return throw_type_error(env, "flock(fd, operation): two integers");
  if (fd < 0) return throw_type_error(env, "flock: fd must not be negative");
  struct flock_work *w = calloc(1, sizeof *w);
  if (w == NULL) {
    napi_throw(env, errno_error(env, "flock", ENOMEM));
    return NULL;
  }
  w->fd = fd;
  w->operation = operation;
  napi_create_promise(env, &w->deferred, &promise);
  napi_create_string_utf8(env, "poprelay:flock", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, flock_execute, flock_complete, w, &w->work) !=
          napi_ok ||
      napi_queue_async_work(env, w->work) != napi_ok) {
    free(w);
    napi_throw_error(env, NULL, "flock: cannot queue the work");
    return NULL;
  }
  return promise;
}

/* ---- sd_notify ------------------------------------------------------------------------ */

/*
 * The protocol (sd_notify(3)): one datagram of KEY=value lines to the AF_UNIX socket named in
 * $NOTIFY_SOCKET, a path or "@name" for the abstract namespace. systemd learns the sender's PID
 * from the kernel (SO_PASSCRED), so a message sent here counts as the main process's
 * (NotifyAccess=main). Synchronous: a local datagram never waits on a reader.
 */
static napi_value js_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char socket_name[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  size_t name_length, message_length;
  /* The name's full length first: a copy would cut a long one short, silently. */
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_string_utf8(env, argv[0], NULL, 0, &name_length) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], NULL, 0, &message_length) != napi_ok)
    return throw_type_error(env, "notify(socket, message): two strings");

  struct sockaddr_un address;
  memset(&address, 0, sizeof address);
  address.sun_family = AF_UNIX;
  socket_name[0] = '\0';
  if (name_length < sizeof socket_name)
    napi_get_value_string_utf8(env, argv[0], socket_name, sizeof socket_name, &name_length);
  if ((socket_name[0] != '/' && socket_name[0] != '@') || name_length < 2 ||
      name_length > sizeof address.sun_path ||
      (socket_name[0] == '/' && name_length == sizeof address.sun_path) ||
      strlen(socket_name) != name_length)
    return throw_type_error(
        env, "notify: NOTIFY_SOCKET must be an absolute path or @abstract name, of at most 107 bytes");
  memcpy(address.sun_path, socket_name, name_length);
  if (socket_name[0] == '@') address.sun_path[0] = '\0';
  /* An abstract name is exactly its bytes; a path ends at its NUL. */
  socklen_t address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + name_length +
                                         (socket_name[0] == '/' ? 1 : 0));

  char *message = malloc(message_length + 1);
  if (message == NULL) {
    napi_throw(env, errno_error(env, "notify", ENOMEM));
    return NULL;
  }
  napi_get_value_string_utf8(env, argv[1], message, message_length + 1, &message_length);

  int error = 0;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    error = errno;
  } else {
    ssize_t sent;
    do sent = sendto(fd, message, message_length, MSG_NOSIGNAL, (struct sockaddr *)&address,
                     address_length);
    while (sent == -1 && errno == EINTR);
    if (sent == -1) error = errno;
    close(fd);
  }
  free(message);
  if (error != 0) {
    napi_throw(env, errno_error(env, fd == -1 ? "socket" : "sendto", error));
    return NULL;
  }
  return NULL;
}

/* ---- module --------------------------------------------------------------------------- */

static napi_value constant(napi_env env, int value) {
  napi_value result;
  napi_create_int32(env, value, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"flock", NULL, js_flock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"notify", NULL, js_notify, NULL, NULL, NULL, napi_enumerable, NULL},
      {"LOCK_SH", NULL, NULL, NULL, NULL, constant(env, LOCK_SH), napi_enumerable, NULL},
      {"LOCK_EX", NULL, NULL, NULL, NULL, constant(env, LOCK_EX), napi_enumerable, NULL},
      {"LOCK_UN", NULL, NULL, NULL, NULL, constant(env, LOCK_UN), napi_enumerable, NULL},
      {"LOCK_NB", NULL, NULL, NULL, NULL, constant(env, LOCK_NB), napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
