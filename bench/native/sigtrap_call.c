/*
 * Native anchor for int3bed: the real CPU doing only the trap and the emulation of a call through
 * Linux's signal path.
 *
 * A code page holds a site `int3; nop; nop; nop; nop` (5 bytes, like the kernel's int3 selftest)
 * followed by `incl returns; ret`, and a tiny callee `incl calls; ret`. The counters live on a separate
 * data page: writing data on a page that is being executed is very expensive (self-modifying-code
 * machine clears), so the code page is made read+execute only before the run.
 *
 * The loop calls the site. The int3 raises SIGTRAP; the handler (SA_SIGINFO) does on the ucontext
 * exactly what the kernel's int3_emulate_call() does on pt_regs:
 *     sp -= sizeof(word); *(word *)sp = site + 5 (= ip - 1 + 5); ip = callee;
 * so sigreturn resumes in the callee, which increments `calls` and returns to site + 5, which
 * increments `returns` and returns to the loop. One iteration = one round trip. (The second counter is
 * what proves the push: without it, a handler that jumps but fails to move the stack pointer — e.g.
 * editing REG_UESP instead of REG_ESP on i386 — still "works", because the callee's `ret` then returns
 * straight to the loop, skipping site + 5.)
 *
 * The run is chosen by time: ~0.1 s warm-up, then three rounds of ~0.25 s (or as many as the first
 * argument says, 1 to 100: the benchmark runs one round at a time, between rounds of the check it is
 * compared with); the best round's rate is printed as one JSON line {"bits","rate","iterations","seconds"}. If either counter does not equal
 * the number of iterations, or the handler sees a trap at an unexpected address, it exits 1.
 *
 * Build: gcc -O2 -Wall -m64 (or -m32) sigtrap_call.c -o sigtrap_call
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#if !defined(__x86_64__) && !defined(__i386__)
#error "x86-64 or i386 only"
#endif

#define SITE_OFF 0x00   /* int3; nop; nop; nop; nop; incl returns; ret */
#define CALLEE_OFF 0x40 /* incl calls; ret */
#define SITE_LEN 5

static uintptr_t site;   /* address of the int3 */
static uintptr_t callee; /* address of the callee */

static void die(const char *msg) {
  fprintf(stderr, "sigtrap_call: %s\n", msg);
  exit(1);
}

static void on_trap(int sig, siginfo_t *info, void *ucv) {
  ucontext_t *uc = ucv;
  greg_t *g = uc->uc_mcontext.gregs;
  (void)sig;
  (void)info;
#ifdef __x86_64__
  uintptr_t ip = (uintptr_t)g[REG_RIP]; /* after the int3: site + 1 */
  uintptr_t sp = (uintptr_t)g[REG_RSP];
#else
  /* REG_ESP, not REG_UESP: sigreturn restores %esp from sigcontext.sp (REG_ESP). */
  uintptr_t ip = (uintptr_t)g[REG_EIP];
  uintptr_t sp = (uintptr_t)g[REG_ESP];
#endif
  if (ip - 1 != site) {
    static const char msg[] = "sigtrap_call: SIGTRAP at an unexpected address\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(1);
  }
  /* int3_emulate_call(): push the return address (ip - 1 + 5), jump to the target. */
  sp -= sizeof(uintptr_t);
  *(uintptr_t *)sp = ip - 1 + SITE_LEN;
#ifdef __x86_64__
  g[REG_RSP] = (greg_t)sp;
  g[REG_RIP] = (greg_t)callee;
#else
  g[REG_ESP] = (greg_t)sp;
  g[REG_EIP] = (greg_t)callee;
#endif
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* At `at`: incl (counter); ret — ff 05 disp32 is RIP-relative on x86-64, absolute on i386. */
static void emit_incl_ret(unsigned char *at, volatile uint32_t *counter) {
  int32_t disp;
#ifdef __x86_64__
  disp = (int32_t)((intptr_t)counter - (intptr_t)(at + 6));
#else
  disp = (int32_t)(uintptr_t)counter;
#endif
  at[0] = 0xff;
  at[1] = 0x05;
  memcpy(at + 2, &disp, 4);
  at[6] = 0xc3;
}

typedef void (*site_fn)(void);

/* Runs batches of round trips for at least `seconds`; returns the number done, *elapsed the time. */
static uint64_t run_for(site_fn fn, double seconds, double *elapsed) {
  uint64_t n = 0;
  double t0 = now(), t;
  do {
    for (int i = 0; i < 1024; i++) fn();
    n += 1024;
    t = now() - t0;
  } while (t < seconds);
  *elapsed = t;
  return n;
}

int main(int argc, char **argv) {
  int rounds = 3;
  if (argc > 1) {
    char *end;
    long v = strtol(argv[1], &end, 10);
    if (*end != 0 || v < 1 || v > 100) die("usage: sigtrap_call [rounds 1-100]");
    rounds = (int)v;
  }
  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) page = 4096;
  /* Two adjacent pages: [code][data]. */
  unsigned char *mem = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap failed");
  unsigned char *code = mem;
  volatile uint32_t *calls = (volatile uint32_t *)(mem + page);
  volatile uint32_t *returns = calls + 16; /* its own cache line */

  site = (uintptr_t)(code + SITE_OFF);
  callee = (uintptr_t)(code + CALLEE_OFF);

  static const unsigned char site_bytes[] = {0xcc, 0x90, 0x90, 0x90, 0x90}; /* int3; nop x4 */
  memcpy(code + SITE_OFF, site_bytes, sizeof site_bytes);
  emit_incl_ret(code + SITE_OFF + SITE_LEN, returns);
  emit_incl_ret(code + CALLEE_OFF, calls);

  if (mprotect(code, (size_t)page, PROT_READ | PROT_EXEC) != 0) die("mprotect failed");

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_trap;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGTRAP, &sa, NULL) != 0) die("sigaction failed");

  site_fn fn = (site_fn)site;
  uint64_t total = 0;
  double t;

  total += run_for(fn, 0.1, &t); /* warm-up */

  double best_rate = 0, best_t = 0;
  uint64_t best_n = 0;
  for (int r = 0; r < rounds; r++) {
    uint64_t n = run_for(fn, 0.25, &t);
    total += n;
    if ((double)n / t > best_rate) {
      best_rate = (double)n / t;
      best_n = n;
      best_t = t;
    }
  }

  if ((uint64_t)*calls != (total & 0xffffffffu) || (uint64_t)*returns != (total & 0xffffffffu)) {
    fprintf(stderr, "sigtrap_call: calls %lu, returns %lu != iterations %lu\n", (unsigned long)*calls,
            (unsigned long)*returns, (unsigned long)total);
    return 1;
  }

  printf("{\"bits\":%d,\"rate\":%.0f,\"iterations\":%lu,\"seconds\":%.4f}\n", (int)(sizeof(void *) * 8),
         best_rate, (unsigned long)best_n, best_t);
  return 0;
}
