/* rtad: placeholder entry point until the server lands. */
#include "rta/log.h"

int main(void)
{
    rta_log(RTA_LOG_INFO, "rtad", NULL);
    return 0;
}
