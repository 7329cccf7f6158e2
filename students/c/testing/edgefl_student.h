/* Compile-only stand-in for the generated edgefl_student.h (students/c_export.cc renders the
 * real one per model), so ctest can build host_harness.c as a file. Declares what the harness
 * uses, with the Fashion-MNIST sizes. */
#ifndef EDGEFL_STUDENT_H_
#define EDGEFL_STUDENT_H_

#include <stdint.h>

#define EDGEFL_STUDENT_INPUT_SIZE 784
#define EDGEFL_STUDENT_NUM_CLASSES 10

void edgefl_student_quantize_input(const uint8_t *pixels, int8_t *input);
int edgefl_student_predict(const int8_t *input, int8_t *logits);

#endif /* EDGEFL_STUDENT_H_ */
