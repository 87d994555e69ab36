// Sizes and alignments of the structs TFLM puts in its arena, read off the pinned headers
// (../shared/third_party/tflm). Used for chipfit.cost.arena._STRUCTS. Build and run from the repository root:
//   T=../shared/third_party/tflm; I="-I$T -I$T/third_party/flatbuffers/include -I$T/third_party/gemmlowp \
//     -I$T/third_party/ruy -I$T/third_party/cmsis_nn -I$T/third_party/cmsis_nn/Include"
//   g++ -std=c++17 -DTF_LITE_STATIC_MEMORY $I bench/tflm_struct_sizes.cc -o /tmp/s64 && /tmp/s64      # x86-64
// 32-bit Arm (AAPCS as arm-none-eabi-gcc: 4-byte pointers, 8-byte aligned 64-bit types, short enums), without a
// 32-bit libc: compile the same declarations with `g++ -m32 -malign-double -fshort-enums -c` into an array of
// sizeof/alignof and read it from the object file (main() and printf dropped).
#include <cstdio>
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/core/c/builtin_op_data.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/recording_micro_allocator.h"
#include "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/arena_allocator/recording_single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h"
#include "tensorflow/lite/micro/kernels/conv.h"
#include "tensorflow/lite/micro/kernels/depthwise_conv.h"
#include "tensorflow/lite/micro/kernels/fully_connected.h"
#include "tensorflow/lite/micro/kernels/pooling.h"
#include "tensorflow/lite/micro/kernels/add.h"
#include "tensorflow/lite/micro/kernels/mul.h"
#include "tensorflow/lite/micro/kernels/softmax.h"
#include "tensorflow/lite/micro/kernels/reduce.h"
#include "tensorflow/lite/micro/kernels/logistic.h"
#include "tensorflow/lite/micro/kernels/hard_swish.h"
#include "tensorflow/lite/micro/kernels/activations.h"
#include "tensorflow/lite/micro/kernels/quantize.h"
#include "tensorflow/lite/micro/kernels/dequantize.h"
#include "tensorflow/lite/micro/kernels/strided_slice.h"
#include "tensorflow/lite/micro/kernels/sub.h"
#include "tensorflow/lite/micro/kernels/leaky_relu.h"
using namespace tflite;
struct CmsisConv { OpDataConv r; int buffer_idx; };
struct CmsisFc { OpDataFullyConnected r; int a; int b; int32_t* ks; int32_t x, y, z; };
struct CmsisPool { OpDataPooling r; int buffer_idx; };
struct PadOpData { PadParams params; int32_t output_zero_point; };
#define S(T) printf("%s %zu %zu\n", #T, sizeof(T), alignof(T));
int main() {
S(TfLiteEvalTensor) S(TfLiteTensor) S(TfLiteNode) S(NodeAndRegistration) S(ScratchBufferHandle) S(SubgraphAllocations)
S(TfLiteAffineQuantization) S(TfLiteIntArray) S(TfLiteTensor*)
S(SingleArenaBufferAllocator) S(RecordingSingleArenaBufferAllocator) S(GreedyMemoryPlanner) S(MicroAllocator) S(RecordingMicroAllocator)
S(OpDataConv) S(CmsisConv) S(OpDataFullyConnected) S(CmsisFc) S(OpDataPooling) S(CmsisPool) S(OpDataAdd) S(OpDataMul) S(SoftmaxParams)
S(OpDataReduce) S(OpDataLogistic) S(HardSwishParams) S(ReluOpData) S(Relu6OpData) S(OpDataQuantizeReference) S(DequantizeOpData)
S(StridedSliceParams) S(OpDataSub) S(LeakyReluOpData) S(PadOpData)
S(TfLiteConvParams) S(TfLiteDepthwiseConvParams) S(TfLiteFullyConnectedParams) S(TfLitePoolParams) S(TfLiteAddParams) S(TfLiteMulParams)
S(TfLiteSoftmaxParams) S(TfLiteReshapeParams) S(TfLiteReducerParams) S(TfLiteConcatenationParams) S(TfLiteStridedSliceParams) S(TfLiteSqueezeParams) S(TfLiteSubParams) S(TfLiteLeakyReluParams) S(TfLiteTransposeConvParams)
}
