#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "edgefl_student.h"

static double ns(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  FILE *f;
  long n, size, i;
  uint8_t *pixels;
  int8_t *input, *logits;
  double cpu0, wall0, cpu, wall;
  if (argc != 3 || (f = fopen(argv[1], "rb")) == NULL) return 2;
  fseek(f, 0, SEEK_END);
  size = ftell(f);
  rewind(f);
  n = size / EDGEFL_STUDENT_INPUT_SIZE;
  pixels = malloc((size_t)size + 1);
  input = malloc((size_t)size + 1);
  logits = malloc((size_t)n * EDGEFL_STUDENT_NUM_CLASSES + 1);
  if (!pixels || !input || !logits || fread(pixels, 1, (size_t)size, f) != (size_t)size) return 2;
  fclose(f);
  for (i = 0; i < n; ++i) {
    edgefl_student_quantize_input(pixels + i * EDGEFL_STUDENT_INPUT_SIZE,
                                  input + i * EDGEFL_STUDENT_INPUT_SIZE);
  }
  cpu0 = ns(CLOCK_PROCESS_CPUTIME_ID);
  wall0 = ns(CLOCK_MONOTONIC);
  for (i = 0; i < n; ++i) {
    edgefl_student_predict(input + i * EDGEFL_STUDENT_INPUT_SIZE,
                           logits + i * EDGEFL_STUDENT_NUM_CLASSES);
  }
  cpu = ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
  wall = ns(CLOCK_MONOTONIC) - wall0;
  if ((f = fopen(argv[2], "wb")) == NULL) return 2;
  if (fwrite(logits, 1, (size_t)n * EDGEFL_STUDENT_NUM_CLASSES, f) !=
      (size_t)n * EDGEFL_STUDENT_NUM_CLASSES) return 2;
  fclose(f);
  printf("%ld %.1f %.1f\n", n, n ? cpu / n : 0.0, n ? wall / n : 0.0);
  return 0;
}
