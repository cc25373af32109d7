/* stb_write_impl.c: the stb_image_write implementation, for the builds that
 * compile stb from its headers (see stb_impl.c). Its JPEG writer shifts its
 * bit buffer into the sign bit of an int (UBSan: "left shift of 14090240 by
 * 8 places cannot be represented in type 'int'"), so this file alone is
 * built without UBSan's shift-base check. The library writes only PNGs;
 * the tests write JPEGs to test the decoder.
 */
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
