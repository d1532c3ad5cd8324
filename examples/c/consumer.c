/*
 * A framebus consumer in C: attaches to a bus, takes frames, optionally
 * checks each against the fake camera's test pattern, and prints each frame
 * and a summary with its latencies.
 *
 *   cc -std=c11 -O2 consumer.c $(pkg-config --cflags --libs framebus) -o consumer
 *   framebus produce --bus cam0 &
 *   ./consumer --bus cam0 --frames 100 --verify
 *
 * Options:
 *   --bus NAME             the bus (required)
 *   --frames N             stop after N frames (default: run until killed)
 *   --verify               check every frame against the test pattern
 *   --quiet                no line per frame
 *   --json                 the summary as one JSON line (last stdout line)
 *   --skip N               leave the first N frames out of the latency figures
 *   --hold                 pin one frame, print "holding seq=S", keep it until killed
 *   --timeout-ms T         give up when no frame comes for T ms (default 5000)
 *   --attach-timeout-ms T  wait up to T ms for a producer (default 0: fail at once)
 *   --name NAME            the name `framebus inspect` shows (default "c-consumer")
 *
 * Latency: "latency" is publish -> pinned as the library measured it (what
 * `framebus consume` reports); "wake latency" is publish -> the moment this
 * program holds the pinned frame (CLOCK_MONOTONIC, on Windows
 * QueryPerformanceCounter, right after framebus_consumer_next_frame
 * returns), so it includes the C boundary.
 *
 * Exit status: 0 all good, 2 bad frames, 3 a framebus error (its code name
 * and message on stderr), 4 no frame within the timeout, 64 bad usage.
 */
#define _POSIX_C_SOURCE 200809L
#include <framebus.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef _WIN32
#include <windows.h>
#endif

#ifdef _WIN32
/* The library's clock on Windows (QueryPerformanceCounter), so that
 * publish_ns and this program's "now" compare. */
static uint64_t monotonic_ns(void) {
  LARGE_INTEGER freq, count;
  QueryPerformanceFrequency(&freq);
  QueryPerformanceCounter(&count);
  return (uint64_t)count.QuadPart / (uint64_t)freq.QuadPart * 1000000000u +
         (uint64_t)count.QuadPart % (uint64_t)freq.QuadPart * 1000000000u / (uint64_t)freq.QuadPart;
}
#else
static uint64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
#endif

/* Prints a failed call's status and message and returns exit status 3. */
static int fail(const char *what, framebus_status s) {
  fprintf(stderr, "error: %s: %s (code %d): %s\n", what, framebus_status_name((int)s), (int)s,
          framebus_last_error_message());
  return 3;
}

/* A growable array of latencies in nanoseconds. */
typedef struct {
  uint64_t *v;
  size_t n, cap;
} samples;

static int push(samples *s, uint64_t x) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 1024;
    uint64_t *v = realloc(s->v, cap * sizeof *v);
    if (v == NULL) return -1;
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = x;
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Percentile p (0..100) of sorted samples, in microseconds. */
static double pct_us(const samples *s, double p) {
  if (s->n == 0) return 0.0;
  size_t i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
  return (double)s->v[i] / 1e3;
}

static void usage(void) {
  fprintf(stderr,
          "usage: consumer --bus NAME [--frames N] [--verify] [--quiet] [--json] [--skip N] [--hold]\n"
          "                [--timeout-ms T] [--attach-timeout-ms T] [--name NAME]\n");
}

int main(int argc, char **argv) {
  const char *bus = NULL, *name = "c-consumer";
  uint64_t frames_wanted = 0, skip = 0;
  int verify = 0, quiet = 0, json = 0, hold = 0;
  int64_t timeout_ms = 5000, attach_timeout_ms = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--bus") && v) bus = argv[++i];
    else if (!strcmp(a, "--frames") && v) frames_wanted = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(a, "--skip") && v) skip = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(a, "--timeout-ms") && v) timeout_ms = strtoll(argv[++i], NULL, 10);
    else if (!strcmp(a, "--attach-timeout-ms") && v) attach_timeout_ms = strtoll(argv[++i], NULL, 10);
    else if (!strcmp(a, "--name") && v) name = argv[++i];
    else if (!strcmp(a, "--verify")) verify = 1;
    else if (!strcmp(a, "--quiet")) quiet = 1;
    else if (!strcmp(a, "--json")) json = 1;
    else if (!strcmp(a, "--hold")) hold = 1;
    else {
      usage();
      return 64;
    }
  }
  if (bus == NULL) {
    usage();
    return 64;
  }
  if (!FRAMEBUS_ABI_COMPATIBLE(framebus_abi_version())) {
    fprintf(stderr, "error: libframebus has ABI %#x, this program needs %#x\n", framebus_abi_version(),
            FRAMEBUS_ABI_VERSION);
    return 3;
  }

  framebus_consumer_options opts;
  framebus_status s = framebus_consumer_options_init(&opts);
  if (s != FRAMEBUS_OK) return fail("framebus_consumer_options_init", s);
  opts.name = name;
  framebus_consumer *consumer = NULL;
  s = framebus_consumer_attach(bus, &opts, attach_timeout_ms, &consumer);
  if (s != FRAMEBUS_OK) return fail("framebus_consumer_attach", s);

  framebus_bus_info info;
  s = framebus_consumer_get_bus_info(consumer, &info);
  if (s != FRAMEBUS_OK) {
    framebus_consumer_leave(consumer);
    return fail("framebus_consumer_get_bus_info", s);
  }
  printf("attached bus=%s entry=%u pid=%ld size=%ux%u stride=%u\n", bus, info.entry, (long)getpid(), info.width,
         info.height, info.stride);
  fflush(stdout);

  samples lat = {0}, wake = {0};
  uint64_t frames = 0, bad = 0;
  int rc = 0;
  while (frames_wanted == 0 || frames < frames_wanted) {
    framebus_frame *frame = NULL;
    s = framebus_consumer_next_frame(consumer, timeout_ms, &frame);
    uint64_t now = monotonic_ns();
    if (s == FRAMEBUS_TIMEOUT) {
      fprintf(stderr, "error: no frame within %" PRId64 " ms\n", timeout_ms);
      rc = 4;
      break;
    }
    if (s != FRAMEBUS_OK) {
      rc = fail("framebus_consumer_next_frame", s);
      break;
    }
    framebus_frame_info fi;
    s = framebus_frame_get_info(frame, &fi);
    if (s != FRAMEBUS_OK) {
      framebus_frame_release(frame);
      rc = fail("framebus_frame_get_info", s);
      break;
    }
    frames++;
    if (frames > skip) {
      if (push(&lat, fi.latency_ns) != 0 || push(&wake, now > fi.publish_ns ? now - fi.publish_ns : 0) != 0) {
        fprintf(stderr, "error: out of memory\n");
        framebus_frame_release(frame);
        rc = 3;
        break;
      }
    }
    int ok = 1;
    if (verify) {
      s = framebus_frame_verify_pattern(frame);
      if (s == FRAMEBUS_ERROR_PATTERN_MISMATCH) {
        ok = 0;
        bad++;
        fprintf(stderr, "bad frame: %s\n", framebus_last_error_message());
      } else if (s != FRAMEBUS_OK) {
        framebus_frame_release(frame);
        rc = fail("framebus_frame_verify_pattern", s);
        break;
      }
    }
    if (!quiet) {
      printf("frame seq=%" PRIu64 " %ux%u stride=%u format=%u first=%u latency_us=%.1f%s\n", fi.seq, fi.width,
             fi.height, fi.stride, fi.format, (unsigned)fi.data[0], (double)fi.latency_ns / 1e3,
             verify ? (ok ? " verified" : " BAD") : "");
      fflush(stdout);
    }
    if (hold) {
      /* Keep the pin until killed: the producer must reclaim it. */
      printf("holding seq=%" PRIu64 "\n", fi.seq);
      fflush(stdout);
#ifdef _WIN32
      for (;;) Sleep(INFINITE);
#else
      for (;;) pause();
#endif
    }
    framebus_frame_release(frame);
  }

  framebus_consumer_stats st = {0};
  (void)framebus_consumer_get_stats(consumer, &st);
  framebus_consumer_leave(consumer);
  qsort(lat.v, lat.n, sizeof *lat.v, cmp_u64);
  qsort(wake.v, wake.n, sizeof *wake.v, cmp_u64);
  if (json) {
    printf("{\"frames\":%" PRIu64 ",\"bad_frames\":%" PRIu64 ",\"skipped\":%" PRIu64 ",\"reattached\":%" PRIu64
           ",\"coalesced\":%" PRIu64 ",\"latency_us\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f}"
           ",\"wake_latency_us\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f}}\n",
           frames, bad, st.skipped, st.reattached, st.coalesced, pct_us(&lat, 50), pct_us(&lat, 99), pct_us(&lat, 100),
           pct_us(&wake, 50), pct_us(&wake, 99), pct_us(&wake, 100));
  } else {
    printf("%" PRIu64 " frames, %" PRIu64 " bad, %" PRIu64 " skipped; latency p50 %.1f us p99 %.1f us; wake latency p50 %.1f us p99 %.1f us\n",
           frames, bad, st.skipped, pct_us(&lat, 50), pct_us(&lat, 99), pct_us(&wake, 50), pct_us(&wake, 99));
  }
  free(lat.v);
  free(wake.v);
  if (rc == 0 && bad > 0) rc = 2;
  return rc;
}
