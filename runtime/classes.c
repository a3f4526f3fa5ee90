/*
 * classes.c: loads class libraries. A class library exports dobj_class_v1()
 * (see DOBJ_CLASS in dobj.h); its dobj_* calls resolve against this binary,
 * which exports them (-rdynamic). The table is written before shards start
 * and read-only after.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static struct rt_class classes[RT_CLASSES_MAX];
static unsigned nclasses;

static int load_one(const char *path, char *err, size_t errlen)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        snprintf(err, errlen, "class %s: %s", path, dlerror());
        return DOBJ_ECONFIG;
    }
    const dobj_class *(*get)(void) = (const dobj_class *(*)(void))dlsym(dl, "dobj_class_v1");
    const dobj_class *cls = get != NULL ? get() : NULL;
    const char *why = NULL;
    if (get == NULL)
        why = "does not export dobj_class_v1 (use DOBJ_CLASS in the class's source)";
    else if (cls == NULL)
        why = "dobj_class_v1() returned NULL";
    else if (cls->abi_version != DOBJ_ABI_VERSION)
        why = "was built against another dobj.h (abi_version differs; rebuild it)";
    else if (cls->name == NULL || !rt_class_name_valid(cls->name, strlen(cls->name)))
        why = "has an invalid name (1-64 bytes of a-z 0-9 _ -, not starting with _)";
    else if (rt_class_find(cls->name, strlen(cls->name)) != NULL)
        why = "has the same name as a class loaded before";
    if (why != NULL) {
        snprintf(err, errlen, "class %s %s", path, why);
        dlclose(dl);
        return DOBJ_ECONFIG;
    }
    classes[nclasses++] = (struct rt_class){.cls = cls, .dl = dl, .path = sdk_xstrdup(path)};
    return 0;
}

int rt_classes_load(const struct rt_config *c, char *err, size_t errlen)
{
    for (unsigned i = 0; i < c->nclasses; i++) {
        int rv = load_one(c->classes[i], err, errlen);
        if (rv != 0)
            return rv;
    }
    return 0;
}

const struct rt_class *rt_class_find(const char *name, size_t len)
{
    for (unsigned i = 0; i < nclasses; i++)
        if (strlen(classes[i].cls->name) == len && memcmp(classes[i].cls->name, name, len) == 0)
            return &classes[i];
    return NULL;
}

const struct rt_class *rt_class_at(unsigned i) { return i < nclasses ? &classes[i] : NULL; }

void rt_classes_close(void)
{
    for (unsigned i = 0; i < nclasses; i++) {
        dlclose(classes[i].dl);
        free(classes[i].path);
    }
    nclasses = 0;
}
