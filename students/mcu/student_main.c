/* Test firmware main for an exported student (QEMU `-M mps2-an386`, see startup.c): runs the
 * library on the images of student_images.h, which the test writes beside the export as
 *   static const uint8_t images[N][EDGEFL_STUDENT_INPUT_SIZE] = {...};
 * and prints one line "EDGEFL <image> <class> <logit>..." per image through semihosting, then
 * "EDGEFL_DONE". */
#include <stdio.h>

#include "edgefl_student.h"
#include "student_images.h"

int main(void) {
  int8_t input[EDGEFL_STUDENT_INPUT_SIZE], logits[EDGEFL_STUDENT_NUM_CLASSES];
  unsigned i;
  int c;
  for (i = 0; i < sizeof(images) / sizeof(images[0]); ++i) {
    edgefl_student_quantize_input(images[i], input);
    printf("EDGEFL %u %d", i, edgefl_student_predict(input, logits));
    for (c = 0; c < EDGEFL_STUDENT_NUM_CLASSES; ++c) printf(" %d", logits[c]);
    printf("\n");
  }
  printf("EDGEFL_DONE\n");
  return 0;
}
