/* test_json.c - the JSON writer: escaping, UTF-8 validation, nesting, base64. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/bb.h"
#include "proto/json.h"

Test(json, escaping_and_structure)
{
	struct bb b;
	struct json j;

	bb_init(&b, 0);
	json_init(&j, &b);
	json_obj(&j);
	json_key(&j, "s");
	json_str(&j, span_make("a\"b\\c\n\x01\xff\xc3\xa9", 10));
	json_key(&j, "a");
	json_arr(&j);
	json_u64(&j, 1);
	json_i64(&j, -2);
	json_bool(&j, true);
	json_null(&j);
	json_cstr(&j, NULL);
	json_base64(&j, span_make("foob", 4));
	json_arr_end(&j);
	json_obj_end(&j);
	cr_assert_eq(j.err, 0);
	cr_assert_eq(bb_append(&b, "", 1), 0);
	cr_assert_str_eq((const char *)b.p,
			 "{\"s\":\"a\\\"b\\\\c\\n\\u0001\xef\xbf\xbd\xc3\xa9\",\"a\":[1,-2,true,null,null,\"Zm9vYg==\"]}");
	cr_assert_eq(j.num_bad, 1);
	bb_fini(&b);
}

Test(json, bad_nesting_is_an_error)
{
	struct bb b;
	struct json j;

	bb_init(&b, 0);
	json_init(&j, &b);
	json_obj_end(&j);
	cr_assert_neq(j.err, 0);
	bb_fini(&b);
}
