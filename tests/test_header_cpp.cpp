// include/polyattn.h compiles as C++ (-pedantic) with C linkage: the C++ half of the
// header-compat test.  Struct layouts must agree with the C view.
#include "polyattn.h"

#include <cstddef>

static_assert(sizeof(polyattn_tensor_desc) == 72, "dtype, padding, 4 + 4 int64");

extern "C" int polyattn_header_cpp_check(void);

extern "C" int polyattn_header_cpp_check(void)
{
    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, POLYATTN_DTYPE_BF16, 1, 4, 2, 5, 6, 16, 8);
    const char *message = nullptr;
    if (polyattn_attention_desc_validate(&desc, &message) != POLYATTN_STATUS_SUCCESS) return 1;
    if (desc.struct_size != sizeof(polyattn_attention_desc)) return 1;
    polyattn_status st = POLYATTN_STATUS_UNSUPPORTED;
    return polyattn_status_name(st)[0] == 'U' ? 0 : 1;
}
