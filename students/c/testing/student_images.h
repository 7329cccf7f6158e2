/* Compile-only stand-in for the student_images.h that distill_test writes for
 * mcu/student_main.c (the real one holds test images). */
#include <stdint.h>
static const uint8_t images[1][784] = {{0}};
